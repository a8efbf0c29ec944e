using System.Globalization;
using Tidemark.Engine.Domains;

// A child process for the engine crash tests: opens the engine on a state directory, starts
// the domain, prints "ready SOCKET", then creates checkpoints k0, k1, … in a loop, printing
// "checkpoint NAME" after each has returned. It never exits by itself; the test kills it with
// SIGKILL while guests write through the socket.
if (args.Length != 3)
{
    await Console.Error.WriteLineAsync("usage: crash-host STATE_DIR DOMAIN PAUSE_MS");
    return 2;
}

var pause = int.Parse(args[2], CultureInfo.InvariantCulture);
var host = await DomainHost.OpenAsync(args[0]);
var domain = host.LookupByName(args[1]);
await domain.StartAsync();
var stdout = Console.Out;
await stdout.WriteLineAsync($"ready {domain.Running!.SocketPath}");
await stdout.FlushAsync();
for (var i = 0; ; i++)
{
    await Task.Delay(pause);
    var name = await domain.Checkpoints.CreateAsync($"<domaincheckpoint><name>k{i}</name></domaincheckpoint>");
    await stdout.WriteLineAsync($"checkpoint {name}");
    await stdout.FlushAsync();
}
