using SharpFuzz;
using Tidemark.Fuzz;

// Usage: Tidemark.Fuzz TARGET            run under afl-fuzz (bench/fuzz/run TARGET MINUTES)
//        Tidemark.Fuzz TARGET FILE...    run each file once and say how it ended (replaying a crash)
if (args.Length == 0 || !FuzzTarget.All.TryGetValue(args[0], out var create))
{
    await Console.Error.WriteLineAsync($"usage: Tidemark.Fuzz ({string.Join('|', FuzzTarget.All.Keys)}) [FILE...]");
    return 2;
}

// Instrumented code must not run before SharpFuzz has set up afl's coverage map, so the target
// (whose constructor runs Tidemark code) is created inside the fuzzing loop, on its first input.
FuzzTarget? target = null;
try
{
    if (args.Length > 1)
    {
        target = create();
        foreach (var file in args.Skip(1))
        {
            target.Run(await File.ReadAllBytesAsync(file));
            Console.WriteLine($"{file}: ok");
        }

        return 0;
    }

    Fuzzer.OutOfProcess.Run(stream =>
    {
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        target ??= create();
        target.Run(copy.ToArray());
    });
    return 0;
}
finally
{
    (target as IDisposable)?.Dispose();
}
