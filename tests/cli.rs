//! What a user sees at the command line: help, and errors that say where the problem is.

mod common;

use common::{ok, path, vigil};

#[test]
fn help_explains_each_command() {
    let help = ok(&["--help"]);
    for command in ["generate", "backtest", "rules", "bench"] {
        assert!(help.contains(command), "{help}");
    }
    let help = ok(&["backtest", "--help"]);
    assert!(
        help.contains("--transactions") && help.contains("--labels") && help.contains("--rules"),
        "{help}"
    );
}

#[test]
fn the_default_rules_check_out() {
    let out = ok(&["rules", "check"]);
    assert!(
        out.contains("velocity_burst") && out.contains("all valid"),
        "{out}"
    );
}

#[test]
fn a_bad_rules_file_names_its_line_and_rule() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.toml");
    let text = "[[rule]]\nid = \"burst\"\ndescription = \"x\"\nwhen = \"card_count_10m >= five\"\nscore = 1\nreason = \"BURST\"\n";
    std::fs::write(&file, text).unwrap();
    let out = vigil(&["rules", "check", path(&file)]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "rules.toml:4: rule `burst`: in `when`, at character 19: unknown feature `five`"
        ),
        "{stderr}"
    );
}

#[test]
fn a_bad_config_file_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vigil.toml");
    std::fs::write(&config, "[engine]\nreview_threshold = 0.6\ndecline = 0.9\n").unwrap();
    let tx = dir.path().join("tx.ndjson");
    std::fs::write(&tx, "").unwrap();
    let out = vigil(&[
        "backtest",
        "--transactions",
        path(&tx),
        "--config",
        path(&config),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 3") && stderr.contains("unknown field `decline`"),
        "{stderr}"
    );
}
