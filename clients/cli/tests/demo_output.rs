//! What `vanna demo` prints: with `--json` nothing but one JSON object per
//! block; without, words for people, never Rust's debug output.

use std::process::Command;

fn demo(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_vanna")).arg("demo").args(args).output().expect("the demo runs");
    assert!(output.status.success(), "the demo fails: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

#[test]
fn json_is_one_object_per_block_and_nothing_else() {
    let lines: Vec<String> = demo(&["--json"]).lines().map(str::to_string).collect();
    for (index, line) in lines.iter().enumerate() {
        let block: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|error| panic!("line {index}: {error}"));
        assert!(block.get("receipts").is_some() && block.get("state_root").is_some(), "line {index} is a block");
    }
    let summary = demo(&[]);
    let last_block: u64 = summary
        .lines()
        .filter_map(|line| line.strip_prefix("== block ")?.split(':').next()?.parse().ok())
        .max()
        .expect("the summary names its blocks");
    assert_eq!(lines.len() as u64, last_block, "every block, the ones the summary skips included");
}

#[test]
fn the_summary_is_words_not_debug_output() {
    let summary = demo(&[]);
    // Debug formatting of the runtime's types, as it used to leak through.
    for leak in ["OrderId(", " { ", "Staked", "Transferred", "(User)", "(Unfilled)", "(Replaced)", "DoubleVote"] {
        assert!(!summary.contains(leak), "the summary shows {leak:?}");
    }
    assert!(summary.contains("claims its rewards from validator-1"));
    assert!(summary.contains("ETH is stale"), "a stale underlying is said to be stale");
}
