//! Config parsing and validation cases (SPEC 1 and 3).

use super::*;

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::from_yaml(text, Path::new("test.yaml"))
}

#[test]
fn minimal_file_is_valid_with_defaults() {
    std::env::set_var("CFG_TEST_MIN_KEY", "secret-value-1");
    let c = parse("pools: { default: { keys: [ { env: CFG_TEST_MIN_KEY } ] } }").unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.admin.listen.to_string(), "127.0.0.1:9090");
    assert_eq!(c.upstream.base_url.to_string(), "https://generativelanguage.googleapis.com/");
    assert_eq!(c.upstream.request_timeout, Duration::from_secs(600));
    assert_eq!(c.upstream.max_request_body, 32 << 20);
    assert_eq!(c.shutdown_grace, Duration::from_secs(30));
    assert_eq!(c.clients.mode, ClientMode::Open);
    assert_eq!(c.default_pool, "default");
    let key = &c.pools[0].keys[0];
    assert!(key.id.starts_with("key-") && key.id.len() == 12);
    assert_eq!(key.secret.expose(), "secret-value-1");
}

#[test]
fn every_error_is_reported_with_line_and_field() {
    let text = "\
listen: 127.0.0.1:8080
upstream:
  connect_timeout: 5 parsecs
  colour: blue
limits: {}
pools:
  default:
    strategy: fastest
    keys:
      - { env: CFG_TEST_SURELY_UNSET }
";
    let errs = parse(text).unwrap_err();
    let all = errs.to_string();
    assert!(all.contains("test.yaml:3: upstream.connect_timeout:"), "{all}");
    assert!(all.contains("test.yaml:4: upstream.colour: unknown field"), "{all}");
    assert!(all.contains("test.yaml:5: limits: unknown field"), "{all}");
    assert!(all.contains("test.yaml:8: pools.default.strategy:"), "{all}");
    assert!(
        all.contains("test.yaml:10: pools.default.keys[0].env: environment variable CFG_TEST_SURELY_UNSET is not set"),
        "{all}"
    );
    assert_eq!(errs.errors.len(), 5, "{all}");
}

#[test]
fn structural_errors_name_the_line() {
    let errs = parse("pools:\n  default:\n    keys: 7\n").unwrap_err();
    assert_eq!(errs.errors[0].line, Some(3), "{errs}");
    assert!(errs.to_string().contains("pools.default.keys"), "{errs}");
}

#[test]
fn open_mode_is_refused_off_loopback() {
    std::env::set_var("CFG_TEST_OPEN_KEY", "k");
    let errs = parse("listen: 0.0.0.0:8080\npools: { default: { keys: [ { env: CFG_TEST_OPEN_KEY } ] } }").unwrap_err();
    assert!(errs.to_string().contains("clients.mode"), "{errs}");
}

#[test]
fn several_pools_need_a_default() {
    std::env::set_var("CFG_TEST_P1", "k1");
    std::env::set_var("CFG_TEST_P2", "k2");
    let errs =
        parse("pools:\n  free: { keys: [ { env: CFG_TEST_P1 } ] }\n  paid: { keys: [ { env: CFG_TEST_P2 } ] }\n")
            .unwrap_err();
    assert!(errs.to_string().contains("none named `default`"), "{errs}");
}

#[test]
fn key_files_and_projects() {
    let dir = std::env::temp_dir().join(format!("gemgate-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("keys"), "# comment\n\nplain-key-1\nk2 value-2\nk3 value-3 proj-x\n").unwrap();
    let c = Config::from_yaml("pools: { default: { keys: [ { file: keys } ] } }", &dir.join("proxy.yaml")).unwrap();
    let keys = &c.pools[0].keys;
    assert_eq!(keys.len(), 3);
    assert_eq!(keys[1].id, "k2");
    assert_eq!(keys[2].project.as_deref(), Some("proj-x"));
    let errs = Config::from_yaml(
        "pools:\n  a: { keys: [ { file: keys } ] }\n  default: { keys: [ { id: z, key: value-3, project: proj-x } ] }\n",
        &dir.join("proxy.yaml"),
    )
    .unwrap_err();
    let all = errs.to_string();
    assert!(all.contains("same value"), "{all}");
    assert!(all.contains("project `proj-x` is declared in pools"), "{all}");
}

#[test]
fn errors_never_show_secret_values() {
    std::env::set_var("CFG_TEST_DUP", "do-not-print-me");
    let errs = parse("pools: { default: { keys: [ { env: CFG_TEST_DUP }, { id: b, key: { env: CFG_TEST_DUP } } ] } }")
        .unwrap_err();
    assert!(!errs.to_string().contains("do-not-print-me"));
}
