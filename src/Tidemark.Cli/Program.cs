using System.Runtime.InteropServices;
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

using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
using var terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
using var hangUp = PosixSignalRegistration.Create(PosixSignal.SIGHUP, OnSignal);
return await TidemarkCommandLine.RunAsync(args, Console.Out, Console.Error, stop.Token).ConfigureAwait(false);
