using Microsoft.Extensions.Logging;

namespace Tidemark.Fuzz;

/// <summary>
/// Records the first warning a server logs (an unexpected failure it caught), so the harness
/// reports it as a finding once the input has been served, outside the server's own handlers.
/// Both network targets use it.
/// </summary>
internal sealed class FindingLog : ILoggerFactory, ILogger
{
    private string? _finding;

    public void ThrowIfFailed()
    {
        var finding = Interlocked.Exchange(ref _finding, null);
        if (finding is not null)
        {
            throw new InvalidOperationException(finding);
        }
    }

    public ILogger CreateLogger(string categoryName) => this;

    public void AddProvider(ILoggerProvider provider)
    {
    }

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (logLevel >= LogLevel.Warning)
        {
            Interlocked.CompareExchange(ref _finding, $"server logged {logLevel}: {formatter(state, exception)} {exception}", null);
        }
    }

    public void Dispose()
    {
    }
}
