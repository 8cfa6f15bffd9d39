import Configuration
import Platform

/// The config file and the web config it (or `--web.config.file`) names, read together: the one
/// way `--check-config`, start-up and reload read them.
struct ConfigFiles {
    var config: Config
    /// Problems that do not stop the config from being used, with the file each is about.
    var warnings: [(file: String, message: String)]
    /// The web config's path; nil when none is set.
    var webPath: String?
    /// The web config, or why it cannot be used (at reload the running one then stays).
    var web: Result<WebConfig, ConfigError>

    /// Reads `configPath` (a problem there throws) and the web config it leads to.
    static func load(configPath: String, webConfigFlag: String?, now: Double = WallClock.nowSeconds()) throws(ConfigError) -> ConfigFiles {
        let loaded = try ConfigLoader.load(path: configPath)
        var files = ConfigFiles(config: loaded.config, warnings: loaded.warnings.map { (configPath, $0) }, webPath: nil, web: .success(WebConfig()))
        guard let webPath = webConfigPath(flag: webConfigFlag, config: loaded.config, configPath: configPath) else { return files }
        files.webPath = webPath
        files.web = Result { () throws(ConfigError) in try WebConfigLoader.load(path: webPath) }
        if case .success(let web) = files.web {
            files.warnings += WebAccess.warnings(web, file: webPath, now: now).map { (webPath, $0) }
        }
        return files
    }

    /// The web config to use: `--web.config.file`, else the config's `web_config_file`
    /// (relative to the config file's directory), else none.
    static func webConfigPath(flag: String?, config: Config, configPath: String) -> String? {
        if let flag { return flag }
        guard let path = config.webConfigFile else { return nil }
        return path.hasPrefix("/") ? path : WebConfigLoader.directory(of: configPath) + "/" + path
    }
}
