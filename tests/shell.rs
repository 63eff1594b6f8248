//! Fitting the shell: completion scripts the shells accept, and man pages `man` renders.

use std::process::Command;

use crate::util::Dir;

fn gleap_etl(args: &[&str]) -> crate::util::Run {
    Dir::new().run(args)
}

fn has(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// bash reads the script, registers the completion; completing `gleap-etl r` offers the
/// commands that start so, and `gleap-etl run --pr` the run's options (clap-rs/clap#6421).
#[test]
fn bash_accepts_the_completion_script_and_completes_commands() {
    let dir = Dir::new();
    let out = dir.run(&["completions", "bash"]);
    assert_eq!(out.code, 0, "{out:?}");
    let script = dir.write("gleap-etl.bash", &out.stdout);
    let check = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -e; bash -n {s}; source {s}; complete -p gleap-etl; \
             COMP_WORDS=(gleap-etl r); COMP_CWORD=1; _gleap__etl gleap-etl r gleap-etl; \
             echo \"offered: ${{COMPREPLY[*]}}\"; \
             COMP_WORDS=(gleap-etl run --pr); COMP_CWORD=2; _gleap__etl gleap-etl --pr run; \
             echo \"run offers: ${{COMPREPLY[*]}}\"",
            s = script.display()
        ))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{check:?}");
    assert!(stdout.contains("-F _gleap__etl gleap-etl"), "{stdout}");
    let offered = stdout
        .lines()
        .find_map(|l| l.strip_prefix("offered: "))
        .unwrap();
    let mut offered: Vec<&str> = offered.split_whitespace().collect();
    offered.sort();
    assert_eq!(offered, ["reconcile", "run"], "{stdout}");
    let run_offers = stdout
        .lines()
        .find_map(|l| l.strip_prefix("run offers: "))
        .unwrap();
    for flag in ["--prune", "--prune-sessions"] {
        assert!(run_offers.split_whitespace().any(|w| w == flag), "{stdout}");
    }
}

/// zsh and fish get scripts too (checked by the shell where it is installed).
#[test]
fn zsh_and_fish_completion_scripts() {
    for (shell, check) in [("zsh", "zsh -n"), ("fish", "fish --no-execute")] {
        let dir = Dir::new();
        let out = dir.run(&["completions", shell]);
        assert_eq!(out.code, 0, "{shell}: {out:?}");
        assert!(
            out.stdout.contains("reconcile") && out.stdout.contains("gleap-etl"),
            "{shell}: {out:?}"
        );
        if has(shell) {
            let script = dir.write("script", &out.stdout);
            let r = Command::new("sh")
                .arg("-c")
                .arg(format!("{check} {}", script.display()))
                .output()
                .unwrap();
            assert!(r.status.success(), "{shell}: {r:?}");
        }
    }
    let bad = gleap_etl(&["completions", "tcsh"]);
    assert_eq!(bad.code, 2, "{bad:?}");
}

/// `man` prints a page `man` renders; `man --dir` writes one per command.
#[test]
fn man_pages_render() {
    let dir = Dir::new();
    let page = dir.run(&["man"]);
    assert_eq!(page.code, 0, "{page:?}");
    assert!(page.stdout.contains(".TH gleap-etl 1"), "{page:?}");
    let written = dir.run(&["man", "--dir", dir.join("man1").to_str().unwrap()]);
    assert_eq!(written.code, 0, "{written:?}");
    let mut names: Vec<String> = std::fs::read_dir(dir.join("man1"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for command in [
        "gleap-etl.1",
        "gleap-etl-run.1",
        "gleap-etl-reconcile.1",
        "gleap-etl-verify.1",
    ] {
        assert!(names.iter().any(|n| n == command), "{names:?}");
    }
    if has("man") {
        let r = Command::new("man")
            .arg("-l")
            .arg(dir.join("man1/gleap-etl-run.1"))
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&r.stdout);
        assert!(r.status.success(), "{r:?}");
        assert!(text.contains("gleap-etl-run - Run a pipeline"), "{text}");
        assert!(text.contains("--prune-sessions"), "{text}");
        assert!(r.stderr.is_empty(), "man warned: {r:?}");
    }
}
