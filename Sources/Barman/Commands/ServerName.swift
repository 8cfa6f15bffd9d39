import Platform
import Exposition
import Configuration

/// A server name as barman prints it: told apart from another by its bytes (`ExactString`).
public typealias ServerName = ExactString
