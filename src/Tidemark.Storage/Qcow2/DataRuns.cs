namespace Tidemark.Storage.Qcow2;

/// <summary>
/// The host runs of one request whose data moves outside the metadata lock, in buffer order.
/// The first run is kept inline: nearly every request resolves to one run, and a list per
/// request was about half of what a pull backup's guest writes allocated (each write resolves
/// its own runs, and its copy before write reads through another resolution).
/// </summary>
internal struct DataRuns
{
    private DataRun _first;
    private List<DataRun>? _more;

    public int Count { get; private set; }

    public readonly DataRun this[int index] => index == 0 ? _first : _more![index - 1];

    /// <summary>Appends <paramref name="run"/>, or lengthens the last run when the host bytes follow on from it.</summary>
    public void AddOrExtend(DataRun run)
    {
        if (Count > 0)
        {
            var last = this[Count - 1];
            if (run.Host >= 0 && last.Host >= 0 && last.Host + last.Length == run.Host && last.BufferOffset + last.Length == run.BufferOffset)
            {
                SetLast(last with { Length = last.Length + run.Length });
                return;
            }
        }

        Add(run);
    }

    public void Add(DataRun run)
    {
        if (Count == 0)
        {
            _first = run;
        }
        else
        {
            (_more ??= []).Add(run);
        }

        Count++;
    }

    private void SetLast(DataRun run)
    {
        if (Count == 1)
        {
            _first = run;
        }
        else
        {
            _more![^1] = run;
        }
    }
}

/// <summary>
/// One part of a request whose data moves outside the lock: <see cref="Length"/> bytes at
/// <see cref="BufferOffset"/> of the caller's buffer, to or from the host file at
/// <see cref="Host"/>, or (reads only, <see cref="Host"/> negative) from the backing file.
/// </summary>
internal readonly record struct DataRun(int BufferOffset, int Length, long Host);
