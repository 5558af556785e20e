//! `omendb`: the command line of OmenDB.
//!
//! ```text
//! omendb sql DIR "QUERY; ..."   run the statements, print each result, then the time
//! omendb sql DIR                an interactive shell with history (statements end with ;)
//!     --format table|csv|json   how rows are printed (default: table)
//! ```
//!
//! Rows go to standard output, timings and errors to standard error. Any error (bad SQL,
//! an unknown table or column, a refused write) prints `error: ...` and exits 1. A
//! statement refused while planned, and any failed `INSERT`, changes nothing; an `UPDATE`
//! or `DELETE` that fails at its n-th row keeps the rows before it (one write per row);
//! the statements before a failed one stay applied.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use omendb::{Database, Options};
use omendb_sql::SqlSession;
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

const USAGE: &str = "usage: omendb sql DIR [QUERY] [--format table|csv|json]

  omendb sql DIR \"SELECT ...\"   run the statements in QUERY (separated by ;)
  omendb sql DIR                an interactive shell: statements end with ;, \\q quits";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Table,
    Csv,
    Json,
}

struct Args {
    dir: String,
    query: Option<String>,
    format: Format,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut positional = Vec::new();
    let mut format = Format::Table;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--format" => {
                i += 1;
                format = match args.get(i).map(String::as_str) {
                    Some("table") => Format::Table,
                    Some("csv") => Format::Csv,
                    Some("json") => Format::Json,
                    other => {
                        return Err(format!("--format takes table, csv or json, not {other:?}"))
                    }
                };
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            flag if flag.starts_with("--") => return Err(format!("unknown flag {flag}\n{USAGE}")),
            _ => positional.push(args[i].clone()),
        }
        i += 1;
    }
    match positional.as_slice() {
        [command, dir] if command == "sql" => Ok(Args {
            dir: dir.clone(),
            query: None,
            format,
        }),
        [command, dir, query] if command == "sql" => Ok(Args {
            dir: dir.clone(),
            query: Some(query.clone()),
            format,
        }),
        _ => Err(USAGE.to_string()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&args) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .build()
        .map_err(|e| format!("cannot start the query runtime: {e}"))?;
    let db = Database::open(&args.dir, Options::default()).map_err(|e| e.to_string())?;
    let db = Arc::new(db);
    let session = SqlSession::new(db.clone()).map_err(|e| e.to_string())?;
    let result = match &args.query {
        Some(query) => runtime.block_on(run_statements(&session, query, args.format)),
        None => shell(&runtime, &session, args.format),
    };
    drop(session);
    // A clean close records where the log ends; another handle (none here) would keep it open.
    if let Ok(db) = Arc::try_unwrap(db) {
        db.close().map_err(|e| e.to_string())?;
    }
    result
}

async fn run_statements(session: &SqlSession, sql: &str, format: Format) -> Result<(), String> {
    let started = Instant::now();
    let results = session.sql_each(sql).await.map_err(|e| e.to_string())?;
    let elapsed = started.elapsed();
    let mut out = std::io::stdout().lock();
    let mut rows = 0;
    for batches in &results {
        rows += batches.iter().map(RecordBatch::num_rows).sum::<usize>();
        print_batches(&mut out, batches, format)?;
    }
    out.flush().map_err(|e| e.to_string())?;
    eprintln!(
        "{rows} row{} in {:.3} ms",
        if rows == 1 { "" } else { "s" },
        elapsed.as_secs_f64() * 1e3
    );
    Ok(())
}

fn print_batches(
    out: &mut impl std::io::Write,
    batches: &[RecordBatch],
    format: Format,
) -> Result<(), String> {
    let has_columns = batches.iter().any(|b| b.num_columns() > 0);
    if !has_columns {
        return Ok(());
    }
    match format {
        Format::Table => {
            let table = pretty_format_batches(batches).map_err(|e| e.to_string())?;
            writeln!(out, "{table}").map_err(|e| e.to_string())
        }
        Format::Csv => {
            let mut writer = datafusion::arrow::csv::Writer::new(out);
            for batch in batches {
                writer.write(batch).map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        Format::Json => {
            let mut writer = datafusion::arrow::json::ArrayWriter::new(&mut *out);
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            writer.write_batches(&refs).map_err(|e| e.to_string())?;
            writer.finish().map_err(|e| e.to_string())?;
            writeln!(out).map_err(|e| e.to_string())
        }
    }
}

/// The interactive shell: reads lines until one ends a statement with `;`, runs it, prints
/// the result or the error (which does not end the shell).
fn shell(
    runtime: &tokio::runtime::Runtime,
    session: &SqlSession,
    format: Format,
) -> Result<(), String> {
    let mut editor = rustyline::DefaultEditor::new().map_err(|e| e.to_string())?;
    let history =
        std::env::var_os("HOME").map(|home| std::path::PathBuf::from(home).join(".omendb_history"));
    if let Some(path) = &history {
        // No history yet is fine.
        let _ = editor.load_history(path);
    }
    eprintln!(
        "OmenDB SQL shell on {}. Statements end with ;  \\q quits.",
        session.database().path().display()
    );
    let mut pending = String::new();
    loop {
        let prompt = if pending.is_empty() {
            "omendb> "
        } else {
            "   ...> "
        };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(rustyline::error::ReadlineError::Interrupted) => {
                pending.clear();
                continue;
            }
            Err(rustyline::error::ReadlineError::Eof) => break,
            Err(e) => return Err(e.to_string()),
        };
        let trimmed = line.trim();
        if pending.is_empty() && matches!(trimmed, "\\q" | "quit" | "exit" | ".quit" | ".exit") {
            break;
        }
        if trimmed.is_empty() {
            continue;
        }
        pending.push_str(&line);
        pending.push('\n');
        if !trimmed.ends_with(';') {
            continue;
        }
        let statement = std::mem::take(&mut pending);
        let _ = editor.add_history_entry(statement.trim_end());
        if let Err(message) = runtime.block_on(run_statements(session, &statement, format)) {
            eprintln!("error: {message}");
        }
    }
    if let Some(path) = &history {
        if let Err(e) = editor.save_history(path) {
            eprintln!("warning: history not saved to {}: {e}", path.display());
        }
    }
    Ok(())
}
