namespace Tidemark.Testing;

/// <summary>
/// One <see cref="PrivateLibvirtd"/> for a whole test class (<c>IClassFixture</c>): started by
/// the first test that asks for it, so a missing requirement skips each test rather than
/// failing the class, and stopped when the class is done.
/// </summary>
public sealed class PrivateLibvirtdFixture : IAsyncDisposable
{
    private readonly Lazy<Task<PrivateLibvirtd>> _libvirtd = new(() => PrivateLibvirtd.StartAsync());

    /// <summary>The running libvirtd (started on first use).</summary>
    public Task<PrivateLibvirtd> GetAsync() => _libvirtd.Value;

    public async ValueTask DisposeAsync()
    {
        if (_libvirtd.IsValueCreated && _libvirtd.Value.IsCompletedSuccessfully)
        {
            var libvirtd = await _libvirtd.Value.ConfigureAwait(false);
            await libvirtd.DisposeAsync().ConfigureAwait(false);
        }
    }
}

/// <summary>
/// As <see cref="PrivateLibvirtdFixture"/>, with QEMU running as <c>libvirt-qemu</c> rather
/// than root (<see cref="QemuAccount.LibvirtQemu"/>).
/// </summary>
public sealed class LibvirtQemuLibvirtdFixture : IAsyncDisposable
{
    private readonly Lazy<Task<PrivateLibvirtd>> _libvirtd = new(() => PrivateLibvirtd.StartAsync(QemuAccount.LibvirtQemu));

    /// <summary>The running libvirtd (started on first use).</summary>
    public Task<PrivateLibvirtd> GetAsync() => _libvirtd.Value;

    public async ValueTask DisposeAsync()
    {
        if (_libvirtd.IsValueCreated && _libvirtd.Value.IsCompletedSuccessfully)
        {
            var libvirtd = await _libvirtd.Value.ConfigureAwait(false);
            await libvirtd.DisposeAsync().ConfigureAwait(false);
        }
    }
}
