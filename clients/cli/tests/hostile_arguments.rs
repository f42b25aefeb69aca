//! Every `vanna` subcommand run as a hostile user would: zero, negative, huge,
//! NaN and empty values, missing files, and a stdout closed before the first
//! line. Each run is the built binary under a deadline; it must refuse with a
//! clear error and a non-zero exit, or (closed stdout) end quietly with exit
//! 0. Never a panic (exit 101), an abort (a signal) or a hang (killed at the
//! deadline). Sizes are such that a refused argument errors before any work,
//! so each case takes milliseconds.

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A run still going after this is a hang: it is killed and the case fails.
const DEADLINE: Duration = Duration::from_secs(10);

/// How a run ended: its status, or None when it was killed at the deadline.
struct Run {
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
}

/// Runs `vanna args`, stdout closed at once when `close_stdout`, killing it at
/// the deadline; every process started here has been waited for on return.
fn run(args: &[&str], close_stdout: bool) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vanna"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().expect("piped stdout");
    // Closing the read end now makes the child's first write fail with a broken pipe.
    let stdout_reader = if close_stdout {
        drop(stdout);
        None
    } else {
        Some(std::thread::spawn(move || read_all(stdout)))
    };
    let stderr = child.stderr.take().expect("piped stderr");
    let stderr_reader = std::thread::spawn(move || read_all(stderr));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("the child can be waited for") {
            break Some(status);
        }
        if started.elapsed() > DEADLINE {
            // Killing ends the pipes too, so the readers below return.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Run {
        status,
        stdout: stdout_reader.map(|reader| reader.join().expect("stdout reader")).unwrap_or_default(),
        stderr: stderr_reader.join().expect("stderr reader"),
    }
}

fn read_all(mut pipe: impl Read) -> String {
    let mut bytes = Vec::new();
    let _ = pipe.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// What is wrong with how a run ended, if anything, whatever it was asked.
fn crash(args: &[&str], run: &Run) -> Option<String> {
    let Some(status) = run.status else {
        return Some(format!("`vanna {}` hung: killed after {DEADLINE:?}", args.join(" ")));
    };
    let Some(code) = status.code() else {
        return Some(format!("`vanna {}` was killed by a signal (an abort?): {status}", args.join(" ")));
    };
    if code == 101 || run.stderr.contains("panicked") {
        return Some(format!("`vanna {}` panicked: {}", args.join(" "), run.stderr));
    }
    None
}

/// Collects the failures of many cases, to report them all at once.
#[derive(Default)]
struct Cases {
    failures: Vec<String>,
}

impl Cases {
    /// `vanna args` must refuse: a non-zero exit and an error on stderr that contains `reason`.
    fn refused(&mut self, args: &[&str], reason: &str) {
        let run = run(args, false);
        if let Some(failure) = crash(args, &run) {
            self.failures.push(failure);
            return;
        }
        let code = run.status.and_then(|status| status.code());
        let clear = run.stderr.starts_with("error: ") && run.stderr.contains(reason);
        if code == Some(0) || !clear {
            self.failures.push(format!(
                "`vanna {}` should refuse, saying {reason:?}: exit {code:?}, stderr {:?}, stdout {:?}",
                args.join(" "),
                run.stderr,
                run.stdout.chars().take(300).collect::<String>()
            ));
        }
    }

    /// `vanna args` with stdout closed must end quietly with exit 0.
    fn quiet_on_closed_stdout(&mut self, args: &[&str]) {
        let run = run(args, true);
        if let Some(failure) = crash(args, &run) {
            self.failures.push(format!("closed stdout: {failure}"));
            return;
        }
        let code = run.status.and_then(|status| status.code());
        if code != Some(0) || !run.stderr.is_empty() {
            self.failures.push(format!(
                "`vanna {}` with stdout closed should exit 0 quietly: exit {code:?}, stderr {:?}",
                args.join(" "),
                run.stderr
            ));
        }
    }

    fn check(self) {
        assert!(self.failures.is_empty(), "{} failing case(s):\n{}", self.failures.len(), self.failures.join("\n"));
    }
}

/// A file in the temporary directory, removed when dropped.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> Self {
        let path = std::env::temp_dir().join(format!("vanna-hostile-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).expect("the temporary directory is writable");
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temporary path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const WHOLE: &str = "expected a whole number from";

#[test]
fn hostile_arguments() {
    let mut cases = Cases::default();

    // Top level and genesis.
    let bare = run(&[], false);
    match crash(&[], &bare) {
        Some(failure) => cases.failures.push(failure),
        // Clap's answer to no subcommand: the usage, with exit 2.
        None if bare.status.and_then(|status| status.code()) == Some(2)
            && bare.stderr.contains("Usage: vanna <COMMAND>") => {}
        None => cases.failures.push(format!("`vanna` alone should print its usage: {:?}", bare.stderr)),
    }
    cases.refused(&["nonsense"], "unrecognized subcommand");
    cases.refused(&["genesis", "nonsense"], "unrecognized subcommand");
    cases.refused(&["demo", "--json=maybe"], "--json");

    // price: the pricer's and the calculator's own checks.
    let price = ["price", "--kind", "call", "--strike", "100000", "--vol", "0.6"];
    let with = |base: &[&'static str], extra: &[&'static str]| -> Vec<&'static str> {
        base.iter().chain(extra).copied().collect()
    };
    cases.refused(&with(&price, &["--days", "30", "--spot", "-1"]), "spot must be a positive");
    cases.refused(&with(&price, &["--days", "30", "--spot", "0"]), "spot must be a positive");
    cases.refused(&with(&price, &["--days", "30", "--spot", "NaN"]), "spot must be a positive");
    cases.refused(&with(&price, &["--days", "30", "--spot", "1e400"]), "spot must be a positive");
    cases.refused(&with(&price, &["--days", "30", "--spot", ""]), "invalid value '' for '--spot");
    cases.refused(&with(&price, &["--days", "30", "--spot", "97000", "--rate", "inf"]), "rate must be");
    cases.refused(&with(&price, &["--spot", "97000", "--days", "-1"]), "--days must be");
    cases.refused(&with(&price, &["--spot", "97000", "--days", "1e9"]), "--days must be");
    cases.refused(
        &["price", "--kind", "call", "--spot", "97000", "--strike", "1", "--vol", "-0.6", "--days", "1"],
        "volatility",
    );
    cases.refused(
        &["price", "--kind", "straddle", "--spot", "1", "--strike", "1", "--vol", "1", "--days", "1"],
        "--kind",
    );
    cases.refused(&["price", "--kind", "put"], "required");

    // bench matching.
    for orders in ["0", "-1", "50000001", "18446744073709551616", "NaN", "1e6", ""] {
        cases.refused(&["bench", "matching", "--orders", orders], WHOLE);
    }
    cases.refused(&["bench", "matching", "--seed", "-1"], "invalid value '-1' for '--seed");

    // bench apply: every size bounded, and their product.
    for (flag, value) in [
        ("--accounts", "0"),
        ("--accounts", "-1"),
        ("--accounts", "4294967295"),
        ("--block-size", "0"),
        ("--block-size", "20001"),
        ("--blocks", "0"),
        ("--blocks", "1000000000"),
        ("--blocks", "NaN"),
    ] {
        cases.refused(&["bench", "apply", flag, value], WHOLE);
    }
    cases.refused(&["bench", "apply", "--blocks", "1000", "--block-size", "20000"], "more than 1000000");

    // bench staking.
    for (flag, value) in [
        ("--validators", "-1"),
        ("--validators", "0"),
        ("--validators", "1001"),
        ("--delegators", "0"),
        ("--delegators", ""),
        ("--delegators", "10,-5"),
        ("--delegators", "2000001"),
        ("--blocks", "0"),
        ("--claims", "0"),
        ("--claims", "99999999999"),
    ] {
        cases.refused(&["bench", "staking", flag, value], WHOLE);
    }
    cases.refused(&["bench", "staking", "--validators", "1", "--delegators", "0"], WHOLE);
    cases.refused(&["bench", "staking", "--delegators", "1,2,3,4,5,6,7,8,9"], "at most 8");

    // bench margin.
    for (flag, value) in [("--runs", "0"), ("--runs", "1001"), ("--accounts", "-3"), ("--accounts", "1000001")] {
        cases.refused(&["bench", "margin", flag, value], WHOLE);
    }

    // bench liquidation.
    for (flag, value) in [
        ("--accounts", "0"),
        ("--accounts", "-1"),
        ("--accounts", "2000001"),
        ("--positions", "0"),
        ("--positions", "43"),
        ("--safe-accounts", "-1"),
    ] {
        cases.refused(&["bench", "liquidation", flag, value], WHOLE);
    }
    cases
        .refused(&["bench", "liquidation", "--accounts", "1000000", "--safe-accounts", "1000001"], "more than 2000000");
    for crash in ["-0.3", "0", "0.6", "NaN", "inf", "1e308"] {
        cases.refused(&["bench", "liquidation", "--crash", crash], "--crash must be");
    }
    for share in ["-0.1", "1.5", "NaN"] {
        cases.refused(
            &["bench", "liquidation", "--below-maintenance-share", share],
            "--below-maintenance-share must be",
        );
    }
    cases.refused(&["bench", "liquidation", "--crash", ""], "invalid value '' for '--crash");

    // simulate: the argument checks of this branch (the rest in the test below).
    cases.refused(&["simulate", "--validators", "-1"], "invalid value '-1' for '--validators");
    cases.refused(&["simulate", "--validators", "0"], "--validators");

    // feeder: every flag checked before the first round.
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis();
    let recent_epoch = (now_ms - 5_000).to_string();
    let future_epoch = (now_ms + 3_600_000).to_string();
    let key = ["feeder", "--key-seed", "vanna-demo/validator-1", "--log-level", "error"];
    // One report at most: a case that is wrongly accepted ends instead of running on.
    let fed = with(&key, &["--count", "1"]);
    cases.refused(&["feeder", "--count", "1"], "--key-seed or --key-file");
    cases.refused(&with(&fed, &["--synthetic-epoch-ms", "0"]), "within the last 10 days");
    let future = ["--synthetic-epoch-ms", future_epoch.as_str()];
    cases.refused(&fed.iter().chain(&future).copied().collect::<Vec<_>>(), "from the future");
    cases.refused(&with(&fed, &["--max-source-age-ms", "0"]), WHOLE);
    cases.refused(&with(&fed, &["--max-source-age-ms", "999"]), "less than the synthetic source's step");
    cases.refused(&with(&fed, &["--max-source-age-ms", "-5"]), WHOLE);
    for (flag, value) in [
        ("--interval-ms", "0"),
        ("--interval-ms", "-1"),
        ("--interval-ms", "18446744073709551615"),
        ("--http-timeout-ms", "0"),
        ("--max-deviation-bps", "10001"),
    ] {
        cases.refused(&with(&fed, &[flag, value]), WHOLE);
    }
    cases.refused(&with(&key, &["--count", "0"]), WHOLE);
    cases.refused(&with(&key, &["--count", "NaN"]), WHOLE);
    cases.refused(&with(&fed, &["--source", "ftx"]), "unknown source");
    cases.refused(&with(&fed, &["--source", "csv:"]), "unknown source");
    cases.refused(&with(&fed, &["--source", "csv:/nonexistent/vanna.csv"]), "cannot read /nonexistent/vanna.csv");
    cases.refused(&with(&fed, &["--out", "/nonexistent/reports.jsonl"]), "/nonexistent/reports.jsonl");
    cases.refused(&with(&fed, &["--chain-id", ""]), "--chain-id \"\" is not a chain id");
    cases.refused(&with(&fed, &["--chain-id", "vänna"]), "is not a chain id");
    cases.refused(&with(&fed, &["--underlying", "XYZ"]), "--underlying \"XYZ\" is not listed");
    cases.refused(&with(&fed, &["--underlying", "btc"]), "is not listed");
    cases.refused(&with(&fed, &["--underlying", ""]), "is not listed");
    cases.refused(&with(&fed, &["--underlying", "BTC", "--underlying", "BTC"]), "given twice");
    cases.refused(&with(&fed, &["--log-level", "loud"]), "--log-level");
    cases.refused(&["feeder", "--key-seed", "", "--count", "1"], "--key-seed is empty");
    cases.refused(
        &["feeder", "--key-file", "/nonexistent/vanna.key", "--count", "1"],
        "cannot read /nonexistent/vanna.key",
    );
    let bad_key = TempFile::new("bad.key", "zz\n");
    cases.refused(
        &["feeder", "--key-file", bad_key.path(), "--count", "1"],
        &format!("bad signing key in {}", bad_key.path()),
    );
    let short_key = TempFile::new("short.key", "abcd\n");
    cases.refused(&["feeder", "--key-file", short_key.path(), "--count", "1"], "expected 32 bytes");
    let empty_csv = TempFile::new("empty.csv", "");
    let csv = format!("csv:{}", empty_csv.path());
    cases.refused(&["feeder", "--key-seed", "vanna-demo/validator-1", "--count", "1", "--source", &csv], "empty file");

    // A closed stdout ends every command quietly, however much it had to say.
    cases.quiet_on_closed_stdout(&["demo"]);
    cases.quiet_on_closed_stdout(&["demo", "--json"]);
    cases.quiet_on_closed_stdout(&["genesis", "demo"]);
    cases.quiet_on_closed_stdout(&with(&price, &["--days", "30", "--spot", "97000"]));
    cases.quiet_on_closed_stdout(&with(&price, &["--days", "30", "--spot", "97000", "--json"]));
    cases.quiet_on_closed_stdout(&["bench", "matching", "--orders", "1000"]);
    cases.quiet_on_closed_stdout(&["bench", "matching", "--orders", "1000", "--json"]);
    cases.quiet_on_closed_stdout(&["bench", "apply", "--accounts", "2", "--block-size", "2", "--blocks", "1"]);
    cases.quiet_on_closed_stdout(&[
        "bench",
        "staking",
        "--validators",
        "1",
        "--delegators",
        "1",
        "--blocks",
        "1",
        "--claims",
        "1",
    ]);
    cases.quiet_on_closed_stdout(&["bench", "margin", "--runs", "1", "--accounts", "1"]);
    cases.quiet_on_closed_stdout(&["bench", "liquidation", "--accounts", "2", "--positions", "1"]);
    let epoch = ["--count", "1", "--synthetic-epoch-ms", recent_epoch.as_str()];
    cases.quiet_on_closed_stdout(&key.iter().chain(&epoch).copied().collect::<Vec<_>>());

    cases.check();
}

/// The simulator's and the consensus benchmark's hostile arguments.
#[test]
fn simulate_and_consensus_bench_hostile_arguments() {
    let mut cases = Cases::default();
    cases.refused(&["simulate", "--seeds", "2", "--seed-start", "18446744073709551615"], "--seed-start");
    cases.refused(&["simulate", "--seeds", "0"], "--seeds");
    cases.refused(&["simulate", "--epoch-length", "0"], "--epoch-length");
    cases.refused(&["bench", "consensus", "--blocks", "0"], "--blocks");
    cases.refused(&["bench", "consensus", "--iterations", "0"], "--iterations");
    cases.quiet_on_closed_stdout(&["simulate", "--seeds", "1"]);
    cases.quiet_on_closed_stdout(&["simulate", "--seeds", "1", "--json"]);
    cases.check();
}
