/// The version printed by `--version` and exported as `barman_exporter_build_info{version}`.
/// `make deb` and the Debian changelog use the same number (a test checks the changelog).
public enum BuildInfo {
    public static let version = "0.1.0"
}
