//! Running iptables: one `iptables-restore --noflush` per sync, `-C`/`-I` for the jumps from
//! the built-in chains, and the removal of everything the proxy wrote.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use super::rules::{JUMPS, owned};

/// Why an iptables command failed: the command and what it said.
#[derive(Debug, thiserror::Error)]
#[error("{command}: {message}")]
pub(crate) struct Error {
    command: String,
    message: String,
}

fn run(program: &str, args: &[&str], input: Option<&str>) -> Result<String, Error> {
    let command = format!("{program} {}", args.join(" "));
    let failed = |message: String| Error {
        command: command.clone(),
        message,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(input.as_bytes()).map_err(|e| failed(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| failed(e.to_string()))?;
    if !out.status.success() {
        return Err(failed(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The chains that exist in `table`.
pub(crate) fn chains(table: &str) -> Result<BTreeSet<String>, Error> {
    let saved = run("iptables-save", &["-t", table], None)?;
    Ok(saved
        .lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_owned)
        .collect())
}

/// Applies `input` in one transaction per table. On failure the error quotes the line
/// iptables-restore refused.
pub(crate) fn restore(input: &str) -> Result<(), Error> {
    run("iptables-restore", &["--noflush", "--wait"], Some(input))
        .map(drop)
        .map_err(|mut err| {
            // iptables-restore names the line: "line 12 failed".
            let line = err
                .message
                .split("line ")
                .nth(1)
                .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse::<usize>().ok())
                .and_then(|n| input.lines().nth(n.saturating_sub(1)));
            if let Some(line) = line {
                err.message = format!("{} (the line: {line})", err.message);
            }
            err
        })
}

/// Puts the jumps into the proxy's chains where they are missing (after a restore, so their
/// targets exist).
pub(crate) fn ensure_jumps() -> Result<(), Error> {
    for (table, chain, rule) in JUMPS {
        let check = [&["-w", "-t", table, "-C", chain][..], rule].concat();
        if run("iptables", &check, None).is_err() {
            let insert = [&["-w", "-t", table, "-I", chain, "1"][..], rule].concat();
            run("iptables", &insert, None)?;
        }
    }
    Ok(())
}

/// Removes every jump and chain the proxy ever wrote; what is not there is skipped.
pub(crate) fn cleanup() -> Result<(), Error> {
    for (table, chain, rule) in JUMPS {
        let delete = [&["-w", "-t", table, "-D", chain][..], rule].concat();
        while run("iptables", &delete, None).is_ok() {}
    }
    let mut input = String::new();
    for table in ["filter", "nat"] {
        let ours: Vec<String> = chains(table)?.into_iter().filter(|c| owned(c)).collect();
        if ours.is_empty() {
            continue;
        }
        input.push_str(&format!("*{table}\n"));
        for chain in &ours {
            input.push_str(&format!(":{chain} - [0:0]\n"));
        }
        for chain in &ours {
            input.push_str(&format!("-X {chain}\n"));
        }
        input.push_str("COMMIT\n");
    }
    if input.is_empty() { Ok(()) } else { restore(&input) }
}
