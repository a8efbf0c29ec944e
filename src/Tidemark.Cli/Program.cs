using System.Runtime.InteropServices;
using System.Text;
using Tidemark.Cli;

// SIGINT, SIGTERM and SIGHUP stop a command the way qemu-nbd and qemu-img stop: the command's
// token is cancelled, its images are closed cleanly (persistent bitmaps stored, IN_USE cleared)
// and the process exits by itself. Without this the runtime would end the process on SIGTERM
// before any image is closed, leaving every bitmap inconsistent.
using var stop = new CancellationTokenSource();
void OnSignal(PosixSignalContext context)
{
    context.Cancel = true;
    stop.Cancel();
}

// Redirected output goes through a 64 KiB buffer instead of the runtime's 256 bytes, still
// flushed after every write call: `image map` of a 2 GiB image (90 KB of text, one write call)
// otherwise took 361 write(2) calls and woke the reading process as often; qemu-img's stdio
// makes 26. A terminal keeps the runtime's own writer (and its terminal handling).
if (Console.IsOutputRedirected)
{
    Console.SetOut(new StreamWriter(Console.OpenStandardOutput(), new UTF8Encoding(encoderShouldEmitUTF8Identifier: false), 64 << 10) { AutoFlush = true });
}

using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
using var terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
using var hangUp = PosixSignalRegistration.Create(PosixSignal.SIGHUP, OnSignal);
return await TidemarkCommandLine.RunAsync(args, Console.Out, Console.Error, stop.Token).ConfigureAwait(false);
