import Exporter

#if canImport(Glibc)
import Glibc
#endif

// First, so a signal sent during start-up is queued for the lifecycle instead of killing us.
Signals.install()
Memory.limitArenas()
exit(await Lifecycle.main(arguments: Array(CommandLine.arguments.dropFirst())))
