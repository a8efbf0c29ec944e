using Tidemark.Cli;

return await TidemarkCommandLine.RunAsync(args, Console.Out, Console.Error).ConfigureAwait(false);
