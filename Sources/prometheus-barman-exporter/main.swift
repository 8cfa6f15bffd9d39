import Exporter

#if canImport(Glibc)
import Glibc
#endif

// Before anything can start a thread, so no signal sent during start-up is lost.
Signals.blockHandledSignals()
exit(await Lifecycle.main(arguments: Array(CommandLine.arguments.dropFirst())))
