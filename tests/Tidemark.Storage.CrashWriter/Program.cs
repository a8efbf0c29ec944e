using System.Globalization;
using Tidemark.Storage;
using Tidemark.Storage.CrashWriter;
using Tidemark.Storage.Qcow2;

// A child process for the crash tests: writes the workload through Tidemark into an existing
// image and prints "flushed N" after each completed flush (operations 0..N-1 are durable).
// It never exits by itself; the test kills it with SIGKILL.
//
// "commit TOP" and "rebase TOP NEW_BACKING" run one chain operation instead (commit into the
// backing file, safe rebase onto a qcow2 NEW_BACKING), printing "started" before and "done"
// after it; the test kills them part way. "shrink IMAGE SIZE" opens IMAGE, prints "started"
// and shrinks it to SIZE bytes (qemu-img resize --shrink), then closes it and prints "done".
if (args.Length == 3 && args[0] == "shrink")
{
    await Console.Out.WriteLineAsync("started");
    await Console.Out.FlushAsync();
    await using (var shrunk = await Qcow2Image.OpenAsync(args[1], readOnly: false))
    {
        await shrunk.ResizeAsync(long.Parse(args[2], CultureInfo.InvariantCulture));
    }

    await Console.Out.WriteLineAsync("done");
    await Console.Out.FlushAsync();
    return 0;
}

// "open IMAGE" prints "started", opens IMAGE read-write (which marks its bitmaps IN_USE), prints
// "opened" and exits without closing it, as a process killed while it had the image open would.
if (args.Length == 2 && args[0] == "open")
{
    await Console.Out.WriteLineAsync("started");
    await Console.Out.FlushAsync();
    var opened = await Qcow2Image.OpenAsync(args[1], readOnly: false);
    await Console.Out.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"opened {opened.Bitmaps.Bitmaps.Count}"));
    await Console.Out.FlushAsync();
    return 0;
}

if (args.Length >= 2 && args[0] is "commit" or "rebase")
{
    await Console.Out.WriteLineAsync("started");
    await Console.Out.FlushAsync();
    if (args[0] == "commit")
    {
        await ImageCommit.CommitAsync(args[1], ImageFormat.Qcow2, baseName: null, drop: false);
    }
    else
    {
        await ImageRebase.RebaseAsync(args[1], ImageFormat.Qcow2, args[2], ImageFormat.Qcow2, safe: true);
    }

    await Console.Out.WriteLineAsync("done");
    await Console.Out.FlushAsync();
    return 0;
}

if (args.Length != 3)
{
    await Console.Error.WriteLineAsync("usage: crash-writer IMAGE SEED OPS_PER_FLUSH");
    return 2;
}

var seed = int.Parse(args[1], CultureInfo.InvariantCulture);
var perFlush = int.Parse(args[2], CultureInfo.InvariantCulture);
await using var image = await Qcow2Image.OpenAsync(args[0], readOnly: false);
var workload = new CrashWorkload(seed, image.VirtualSize);
var stdout = Console.Out;
for (var i = 0; ; i++)
{
    var op = workload[i];
    if (op.Zero)
    {
        await image.WriteZeroesAsync(op.Offset, op.Length, op.MayUnmap ? WriteFlags.MayUnmap : WriteFlags.None);
    }
    else
    {
        var data = new byte[op.Length];
        Array.Fill(data, op.Fill);
        await image.WriteAsync(op.Offset, data);
    }

    if ((i + 1) % perFlush == 0)
    {
        await image.FlushAsync();
        await stdout.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"flushed {i + 1}"));
        await stdout.FlushAsync();
    }
}
