import Exporter
import Platform

// First, so a signal sent during start-up is queued for the lifecycle instead of killing us.
Signals.install()
Memory.limitArenas()
OpenFiles.raiseSoftLimit()
ProcessExit.exit(await Lifecycle.main(arguments: Array(CommandLine.arguments.dropFirst())))
