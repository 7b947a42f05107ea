//! Text output: the rollout tree, status icons and colours, ages, tables, and [`Screen`], which
//! redraws a watched view in place on a terminal (one write per frame, each line cleared to its
//! end, no full-screen clear: no flicker) and prints plain successive frames otherwise.

use std::fmt::Write as _;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::info::{PodInfo, RolloutInfo, RunInfo};

/// How to draw.
#[derive(Clone, Copy, Debug)]
pub struct Style {
    /// ANSI colours (a terminal, no `--no-color`, no `NO_COLOR`).
    pub color: bool,
    /// The current time, for ages; `None` leaves ages out (change detection of plain watch
    /// output must not see a new frame just because a second passed).
    pub now: Option<Timestamp>,
}

impl Style {
    pub fn plain(now: Timestamp) -> Self {
        Style {
            color: false,
            now: Some(now),
        }
    }

    /// Whether to colour stdout: a terminal, unless `--no-color` or `NO_COLOR` is set.
    pub fn color_for_stdout(no_color: bool) -> bool {
        use std::io::IsTerminal;
        !no_color && std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal()
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color && !code.is_empty() {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn age(&self, t: &Option<Time>) -> String {
        match (self.now, t) {
            (Some(now), Some(t)) => age(now, t.0),
            _ => String::new(),
        }
    }
}

/// The icon and colour of a status word.
pub fn icon(status: &str) -> (&'static str, &'static str) {
    match status {
        "Healthy" | "Successful" | "Running" | "Succeeded" => ("✔", "32"),
        "Progressing" | "Pending" | "ContainerCreating" | "Terminating" => ("◌", "33"),
        "Paused" | "Inconclusive" => ("॥", "36"),
        "Degraded" | "Failed" | "Error" | "CrashLoopBackOff" | "ImagePullBackOff"
        | "ErrImagePull" => ("✖", "31"),
        "ScaledDown" => ("•", "90"),
        _ => ("⚠", "33"),
    }
}

/// `✔ Healthy`, coloured.
pub fn status_word(style: &Style, status: &str) -> String {
    let (i, c) = icon(status);
    style.paint(c, &format!("{i} {status}"))
}

/// A short age, as kubectl prints them: `45s`, `3m20s`, `25m`, `5h10m`, `20h`, `3d`.
pub fn age(now: Timestamp, then: Timestamp) -> String {
    let secs = now.as_second().saturating_sub(then.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 8 * 3600 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Display width of a string, ignoring ANSI escape sequences.
pub fn width(s: &str) -> usize {
    let mut n = 0;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            n += 1;
        }
    }
    n
}

/// Cuts a line to `max` display columns, keeping ANSI sequences intact (and resetting colour
/// when something was cut).
pub fn truncate(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_string();
    }
    let mut out = String::new();
    let mut n = 0;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            out.push(c);
            for c in chars.by_ref() {
                out.push(c);
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else if n < max {
            out.push(c);
            n += 1;
        }
    }
    if out.contains('\x1b') {
        out.push_str("\x1b[0m");
    }
    out
}

fn pad(s: &str, w: usize) -> String {
    let mut out = s.to_string();
    out.push_str(&" ".repeat(w.saturating_sub(width(s))));
    out
}

/// Rows of cells, aligned in columns two spaces apart (the last column unpadded).
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| width(c))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(&pad(cell, widths[i] + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// An analysis phase: Running is still measuring, not a success.
fn run_status_word(style: &Style, phase: &str) -> String {
    if phase == "Running" {
        style.paint("33", "◌ Running")
    } else {
        status_word(style, phase)
    }
}

fn pod_row(style: &Style, p: &PodInfo, prefix: String) -> Vec<String> {
    let status = if p.status == "Running" && !p.ready {
        style.paint("33", &format!("◌ {}", p.status))
    } else {
        status_word(style, &p.status)
    };
    vec![
        format!("{prefix}□ {}", p.name),
        "Pod".into(),
        status,
        style.age(&p.created),
        format!(
            "ready:{}{}",
            p.containers,
            if p.restarts > 0 {
                format!(",restarts:{}", p.restarts)
            } else {
                String::new()
            }
        ),
    ]
}

fn run_rows(style: &Style, run: &RunInfo, prefix: &str, last: bool, rows: &mut Vec<Vec<String>>) {
    let branch = if last { "└──" } else { "├──" };
    let cont = if last { "   " } else { "│  " };
    let counts: (i32, i32) = run.metrics.iter().fold((0, 0), |(s, f), m| {
        (s + m.successful, f + m.failed + m.error)
    });
    rows.push(vec![
        format!("{prefix}{branch}α {}", run.name),
        "AnalysisRun".into(),
        run_status_word(style, &run.phase),
        style.age(&run.created),
        {
            let mut cells: Vec<String> = run.kind.iter().cloned().collect();
            if run.retired {
                cells.push("retired".into());
            }
            cells.push(format!("✔ {},✖ {}", counts.0, counts.1));
            cells.join(", ")
        },
    ]);
    let n = run.metrics.len();
    for (i, m) in run.metrics.iter().enumerate() {
        let b = if i + 1 == n { "└──" } else { "├──" };
        let values = if m.last_values.is_empty() {
            "no measurement yet".to_string()
        } else {
            format!("last: {}", m.last_values.join(", "))
        };
        rows.push(vec![
            format!("{prefix}{cont}{b}# {}", m.name),
            "Metric".into(),
            run_status_word(style, &m.phase),
            String::new(),
            values,
        ]);
    }
}

/// The full `get rollout` view: summary block, then the tree.
pub fn rollout_tree(info: &RolloutInfo, style: &Style) -> String {
    let mut out = String::new();
    let field = |out: &mut String, k: &str, v: &str| {
        let _ = writeln!(out, "{}{v}", pad(&format!("{k}:"), 17));
    };
    field(&mut out, "Name", &info.name);
    field(&mut out, "Namespace", &info.namespace);
    field(&mut out, "Status", &status_word(style, &info.status));
    if let Some(m) = &info.message {
        field(&mut out, "Message", m);
    }
    field(&mut out, "Strategy", &info.strategy);
    if let Some(s) = &info.step {
        let cur = s
            .current
            .as_ref()
            .map(|c| format!(" ({c})"))
            .unwrap_or_default();
        field(&mut out, "  Step", &format!("{}/{}{cur}", s.index, s.count));
    }
    if let Some(w) = info.set_weight {
        field(&mut out, "  SetWeight", &w.to_string());
    }
    if let Some(w) = info.actual_weight {
        field(&mut out, "  ActualWeight", &w.to_string());
    }
    for (i, img) in info.images.iter().enumerate() {
        let roles = if img.roles.is_empty() {
            String::new()
        } else {
            format!(" ({})", img.roles.join(", "))
        };
        let k = if i == 0 { "Images" } else { "" };
        let _ = writeln!(
            out,
            "{}{}{roles}",
            pad(if k.is_empty() { "" } else { "Images:" }, 17),
            img.image
        );
    }
    out.push_str("Replicas:\n");
    let r = &info.replicas;
    for (k, v) in [
        ("  Desired", r.desired),
        ("  Current", r.current),
        ("  Updated", r.updated),
        ("  Ready", r.ready),
        ("  Available", r.available),
    ] {
        field(&mut out, k, &v.to_string());
    }
    out.push('\n');

    let mut rows: Vec<Vec<String>> = vec![vec![
        "NAME".into(),
        "KIND".into(),
        "STATUS".into(),
        if style.now.is_some() {
            "AGE".into()
        } else {
            String::new()
        },
        "INFO".into(),
    ]];
    rows.push(vec![
        format!("⟳ {}", info.name),
        "Rollout".into(),
        status_word(style, &info.status),
        style.age(&info.created),
        String::new(),
    ]);
    let groups = info.revisions.len() + usize::from(!info.other_analysis_runs.is_empty());
    for (gi, rev) in info.revisions.iter().enumerate() {
        let last_group = gi + 1 == groups;
        let (b, c) = if last_group {
            ("└──", "   ")
        } else {
            ("├──", "│  ")
        };
        let label = rev
            .revision
            .map(|r| format!("revision:{r}"))
            .unwrap_or_else(|| "revision:?".into());
        rows.push(vec![
            format!("{b}# {label}"),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ]);
        let children = rev.replica_sets.len() + rev.analysis_runs.len();
        let mut k = 0;
        for rs in &rev.replica_sets {
            k += 1;
            let last = k == children;
            let (rb, rc) = if last {
                ("└──", "   ")
            } else {
                ("├──", "│  ")
            };
            let mut info_cells = rs.roles.clone();
            if rs.desired > 0 || rs.current > 0 {
                info_cells.push(format!("{}/{} available", rs.available, rs.desired));
            }
            if let Some(at) = &rs.scale_down_at {
                let left = match (style.now, at.parse::<Timestamp>()) {
                    (Some(now), Ok(t)) if t > now => format!("scale-down in {}", age(t, now)),
                    (None, Ok(_)) => "scale-down delay".to_string(),
                    _ => "scale-down pending".to_string(),
                };
                info_cells.push(left);
            }
            rows.push(vec![
                format!("{c}{rb}⧉ {}", rs.name),
                "ReplicaSet".into(),
                status_word(style, &rs.status),
                style.age(&rs.created),
                info_cells.join(", "),
            ]);
            let np = rs.pods.len();
            for (pi, p) in rs.pods.iter().enumerate() {
                let pb = if pi + 1 == np {
                    "└──"
                } else {
                    "├──"
                };
                rows.push(pod_row(style, p, format!("{c}{rc}{pb}")));
            }
        }
        for run in &rev.analysis_runs {
            k += 1;
            run_rows(style, run, c, k == children, &mut rows);
        }
    }
    if !info.other_analysis_runs.is_empty() {
        rows.push(vec![
            "└──# analysis runs".into(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ]);
        let n = info.other_analysis_runs.len();
        for (i, run) in info.other_analysis_runs.iter().enumerate() {
            run_rows(style, run, "   ", i + 1 == n, &mut rows);
        }
    }
    if style.now.is_none() {
        for r in &mut rows {
            r.remove(3);
        }
    }
    out.push_str(&table(&rows));
    out
}

/// Draws successive frames of a watched view.
///
/// On a terminal each frame is one write: cursor home, every line followed by
/// clear-to-end-of-line, then clear-to-end-of-screen — the previous frame is overwritten in
/// place, never blanked first, so nothing flickers. Frames are cut to the terminal's size so the
/// screen never scrolls (which would break drawing from home). Elsewhere (a pipe, a file, a CI
/// log) a frame is printed in full, followed by a blank line, only when its content (ages left
/// out) changed.
#[derive(Debug, Default)]
pub struct Screen {
    tty: bool,
    drawn: bool,
    last: Option<String>,
}

impl Screen {
    pub fn new(tty: bool) -> Self {
        Screen {
            tty,
            drawn: false,
            last: None,
        }
    }

    pub fn is_tty(&self) -> bool {
        self.tty
    }

    /// The bytes to write for `frame` (`key`: the frame without ages, for plain output), or
    /// `None` when nothing needs drawing. `size` is the terminal's (columns, rows).
    pub fn frame(
        &mut self,
        frame: &str,
        key: &str,
        size: Option<(usize, usize)>,
    ) -> Option<String> {
        if self.tty {
            if self.last.as_deref() == Some(frame) {
                return None;
            }
            self.last = Some(frame.to_string());
            let (cols, rows) = size.unwrap_or((usize::MAX, usize::MAX));
            let mut out = String::new();
            if !self.drawn {
                out.push_str("\x1b[2J");
                self.drawn = true;
            }
            out.push_str("\x1b[H");
            let max_lines = rows.saturating_sub(1).max(1);
            let lines: Vec<&str> = frame.lines().collect();
            for (i, line) in lines.iter().take(max_lines).enumerate() {
                out.push_str(&truncate(line, cols.saturating_sub(1).max(1)));
                out.push_str("\x1b[K");
                if i + 1 < lines.len().min(max_lines) {
                    out.push('\n');
                }
            }
            out.push_str("\n\x1b[J");
            Some(out)
        } else {
            if self.last.as_deref() == Some(key) {
                return None;
            }
            self.last = Some(key.to_string());
            let sep = if self.drawn { "\n" } else { "" };
            self.drawn = true;
            Some(format!("{sep}{}", frame.trim_end_matches('\n')).to_string() + "\n")
        }
    }
}

/// The terminal's size (columns, rows), when stdout is one.
pub fn terminal_size() -> Option<(usize, usize)> {
    terminal_size::terminal_size().map(|(w, h)| (usize::from(w.0), usize::from(h.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        let now = Timestamp::from_second(100_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let cases = [
            (5, "5s"),
            (119, "119s"),
            (200, "3m20s"),
            (1500, "25m"),
            (5 * 3600 + 600, "5h10m"),
            (20 * 3600, "20h"),
            (3 * 86400 + 5, "3d"),
        ];
        for (ago, want) in cases {
            let then = Timestamp::from_second(100_000 - ago).unwrap_or(Timestamp::UNIX_EPOCH);
            assert_eq!(age(now, then), want, "{ago}");
        }
    }

    #[test]
    fn width_and_truncate_ignore_colour_codes() {
        let s = "\x1b[32m✔ Healthy\x1b[0m tail";
        assert_eq!(width(s), 14);
        let t = truncate(s, 5);
        assert_eq!(width(&t), 5);
        assert!(t.ends_with("\x1b[0m"));
        assert_eq!(truncate("abc", 5), "abc");
    }

    #[test]
    fn table_aligns_columns() {
        let t = table(&[
            vec!["NAME".into(), "STATUS".into()],
            vec!["a-long-name".into(), "✔ Healthy".into()],
        ]);
        assert_eq!(t, "NAME         STATUS\na-long-name  ✔ Healthy\n");
    }

    #[test]
    fn tty_screen_overwrites_in_place_and_skips_identical_frames() {
        let mut s = Screen::new(true);
        let first = s
            .frame("a\nb\n", "a\nb\n", Some((80, 24)))
            .unwrap_or_default();
        assert_eq!(first, "\x1b[2J\x1b[Ha\x1b[K\nb\x1b[K\n\x1b[J");
        assert_eq!(s.frame("a\nb\n", "a\nb\n", Some((80, 24))), None);
        let second = s
            .frame("a\nc\n", "a\nc\n", Some((80, 24)))
            .unwrap_or_default();
        // No full-screen clear after the first frame: only home, overwrite, clear the rest.
        assert_eq!(second, "\x1b[Ha\x1b[K\nc\x1b[K\n\x1b[J");
        // Cut to the terminal: 3 rows → 2 lines; 4 columns → 3 characters.
        let cut = s
            .frame("abcdef\n2\n3\n4\n", "", Some((4, 3)))
            .unwrap_or_default();
        assert_eq!(cut, "\x1b[Habc\x1b[K\n2\x1b[K\n\x1b[J");
    }

    #[test]
    fn plain_screen_prints_only_changed_content() {
        let mut s = Screen::new(false);
        assert_eq!(s.frame("x 5s\n", "x\n", None).as_deref(), Some("x 5s\n"));
        // Only the age changed: nothing printed.
        assert_eq!(s.frame("x 6s\n", "x\n", None), None);
        assert_eq!(s.frame("y 7s\n", "y\n", None).as_deref(), Some("\ny 7s\n"));
    }
}
