namespace Tidemark.Testing;

/// <summary>
/// libvirt-python (Debian's, under /usr/bin/python3) as a client that asks the server for
/// keepalive, then stays idle and makes one call. With an event implementation registered,
/// libvirt's client asks about PROGRAM_KEEPALIVE at open, and answers PINGs only while the
/// loop runs: "loop" runs it, "stalled" never does (a client whose host froze).
/// </summary>
public static class KeepaliveClient
{
    private const string Script = """
        import sys, threading, time, libvirt
        libvirt.registerErrorHandler(lambda ctx, err: None, None)
        libvirt.virEventRegisterDefaultImpl()
        conn = libvirt.open(sys.argv[1])
        if sys.argv[2] == 'loop':
            def run():
                while True:
                    libvirt.virEventRunDefaultImpl()
            threading.Thread(target=run, daemon=True).start()
        time.sleep(float(sys.argv[3]))
        try:
            print(conn.getLibVersion() > 0)
        except libvirt.libvirtError as e:
            print('error', e.get_error_code())
        """;

    /// <summary>Prints "True" when the call after <paramref name="idle"/> is answered, "error 38" (VIR_ERR_SYSTEM_ERROR: the socket was closed) when the server dropped the client.</summary>
    public static Task<PeerResult> RunAsync(string uri, bool loop, TimeSpan idle) =>
        Peer.RunAsync("/usr/bin/python3", ["-c", Script, uri, loop ? "loop" : "stalled", idle.TotalSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
}
