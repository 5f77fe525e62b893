//! A drill as an SVG timeline, written by hand: acknowledged writes per
//! 10 ms (green bars, up), errors per 10 ms (red bars, down), which node
//! led (a coloured band), and the fault, its undoing, the first node to
//! notice and the first write under the new leader marked with labels.

use super::report::{Drill, Timeline};
use std::fmt::Write as _;

const BUCKET_NS: u64 = 10_000_000;
const WIDTH: f64 = 1000.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const PLOT_TOP: f64 = 70.0;
const PLOT_HEIGHT: f64 = 160.0;
const ERROR_HEIGHT: f64 = 50.0;
const BAND_TOP: f64 = 320.0;
const BAND_HEIGHT: f64 = 26.0;
const HEIGHT: f64 = 420.0;
/// Node colours for the leadership band (node id modulo the list).
const NODE_COLOURS: [&str; 6] = ["#4e79a7", "#f28e2b", "#76b7b2", "#b07aa1", "#edc948", "#9c755f"];

/// Text with XML's special characters escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn buckets(times: &[u64], n: usize) -> Vec<u32> {
    let mut counts = vec![0u32; n];
    for t in times {
        let i = ((t / BUCKET_NS) as usize).min(n - 1);
        counts[i] += 1;
    }
    counts
}

pub fn colour(node: u64) -> &'static str {
    NODE_COLOURS[(node as usize).wrapping_sub(1) % NODE_COLOURS.len()]
}

/// The whole SVG document of one drill.
pub fn render(drill: &Drill) -> String {
    let t: &Timeline = &drill.timeline;
    let end = t.end.max(BUCKET_NS);
    let n = end.div_ceil(BUCKET_NS) as usize;
    let plot_width = WIDTH - LEFT - RIGHT;
    let x = |ns: u64| LEFT + plot_width * (ns.min(end) as f64 / end as f64);
    let bar = (plot_width / n as f64).max(0.5);
    let writes = buckets(&t.writes, n);
    let errors = buckets(&t.errors, n);
    let most = writes.iter().copied().max().unwrap_or(0).max(1);
    let most_errors = errors.iter().copied().max().unwrap_or(0).max(1);
    let base = PLOT_TOP + PLOT_HEIGHT;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#);
    let new = drill.new_leader.map_or("none".to_owned(), |n| format!("node{n}"));
    let title = format!(
        "paxos drill {}: node{} to {new}; detect {}, elect {}, longest without a write {:.0} ms",
        drill.kind,
        drill.old_leader,
        drill.detect_ms.map_or("-".into(), |v| format!("{v:.0} ms")),
        drill.elect_ms.map_or("-".into(), |v| format!("{v:.0} ms")),
        drill.longest_write_gap_ms
    );
    let _ = writeln!(s, r#"<text x="{LEFT}" y="24" font-size="15" font-weight="bold">{}</text>"#, escape(&title));
    let verdict = if drill.passed { "checks passed" } else { "CHECKS FAILED" };
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="44" fill="{}">{verdict}; fault by {}; green: acknowledged writes per 10 ms (peak {most}); red: errors per 10 ms</text>"#,
        if drill.passed { "#2e7d32" } else { "#c62828" },
        escape(&drill.method)
    );

    // Axes: the write scale on the left, seconds along the bottom.
    let _ =
        writeln!(s, r##"<line x1="{LEFT}" y1="{PLOT_TOP}" x2="{LEFT}" y2="{}" stroke="#444"/>"##, base + ERROR_HEIGHT);
    let _ = writeln!(s, r##"<line x1="{LEFT}" y1="{base}" x2="{}" y2="{base}" stroke="#444"/>"##, WIDTH - RIGHT);
    let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="end">{most}</text>"#, LEFT - 6.0, PLOT_TOP + 4.0);
    let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="end">0</text>"#, LEFT - 6.0, base + 4.0);
    let seconds = end / 1_000_000_000;
    let step = (seconds / 10 + 1).max(1);
    for sec in (0..=seconds).step_by(step as usize) {
        let at = x(sec * 1_000_000_000);
        let _ = writeln!(
            s,
            r##"<line x1="{at:.1}" y1="{base}" x2="{at:.1}" y2="{}" stroke="#444"/><text x="{at:.1}" y="{}" text-anchor="middle">{sec} s</text>"##,
            base + 4.0,
            HEIGHT - 30.0
        );
    }

    // The longest stretch without a write, shaded behind the bars.
    let (gap, gap_from) = t.gap;
    if gap > 0 {
        let _ = writeln!(
            s,
            r##"<rect x="{:.1}" y="{PLOT_TOP}" width="{:.1}" height="{PLOT_HEIGHT}" fill="#fff3e0"><title>{:.0} ms without an acknowledged write</title></rect>"##,
            x(gap_from),
            (x(gap_from + gap) - x(gap_from)).max(1.0),
            gap as f64 / 1e6
        );
    }
    s.push_str(r##"<g fill="#2e7d32">"##);
    s.push('\n');
    for (i, count) in writes.iter().enumerate().filter(|(_, c)| **c > 0) {
        let h = PLOT_HEIGHT * f64::from(*count) / f64::from(most);
        let _ = writeln!(
            s,
            r#"<rect x="{:.1}" y="{:.1}" width="{bar:.2}" height="{h:.1}"/>"#,
            x(i as u64 * BUCKET_NS),
            base - h
        );
    }
    s.push_str("</g>\n");
    s.push_str(r##"<g fill="#c62828">"##);
    s.push('\n');
    for (i, count) in errors.iter().enumerate().filter(|(_, c)| **c > 0) {
        let h = ERROR_HEIGHT * f64::from(*count) / f64::from(most_errors);
        let _ =
            writeln!(s, r#"<rect x="{:.1}" y="{base}" width="{bar:.2}" height="{h:.1}"/>"#, x(i as u64 * BUCKET_NS));
    }
    s.push_str("</g>\n");

    // Who led: one coloured stretch per leader, grey with none.
    let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="end">leader</text>"#, LEFT - 6.0, BAND_TOP + 17.0);
    for span in &t.spans {
        let (fill, label) = match span.leader {
            Some(n) => (colour(n), format!("node{n}")),
            None => ("#dddddd", "none".to_owned()),
        };
        let (x0, x1) = (x(span.from), x(span.to));
        let _ = writeln!(
            s,
            r#"<rect x="{x0:.1}" y="{BAND_TOP}" width="{:.1}" height="{BAND_HEIGHT}" fill="{fill}"><title>{label}</title></rect>"#,
            (x1 - x0).max(0.5)
        );
        if x1 - x0 > 40.0 {
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{}" text-anchor="middle" fill="black">{label}</text>"#,
                (x0 + x1) / 2.0,
                BAND_TOP + 17.0
            );
        }
    }

    // Marks: a vertical line across the plot with its label above.
    let marks = [
        (Some(t.fault), format!("{} node{}", drill.kind, drill.old_leader), "#c62828", 0.0),
        (t.detected, "detected".to_owned(), "#6a1b9a", 14.0),
        (t.elected, format!("{new} writes"), "#1565c0", 28.0),
        (t.restored, "restored".to_owned(), "#2e7d32", 42.0),
    ];
    for (at, label, stroke, lift) in marks {
        let Some(at) = at else { continue };
        let xm = x(at);
        let _ = writeln!(
            s,
            r#"<line x1="{xm:.1}" y1="{}" x2="{xm:.1}" y2="{}" stroke="{stroke}" stroke-width="1.5" stroke-dasharray="4 3"/>"#,
            PLOT_TOP - 6.0 + lift,
            BAND_TOP + BAND_HEIGHT
        );
        let anchor = if xm > WIDTH - 160.0 { "end" } else { "start" };
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" fill="{stroke}" stroke="white" stroke-width="3" paint-order="stroke" text-anchor="{anchor}">{} ({:.0} ms)</text>"#,
            xm + if anchor == "start" { 3.0 } else { -3.0 },
            PLOT_TOP - 8.0 + lift + 12.0,
            escape(&label),
            at as f64 / 1e6
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::report::{Span, tests::passing};
    use super::*;

    /// A strict structural XML check: one root, every tag closed in order,
    /// attributes quoted, `&` only in the five entities, no `<` in text.
    pub fn well_formed(doc: &str) -> Result<usize, String> {
        let mut stack: Vec<String> = Vec::new();
        let mut elements = 0;
        let mut roots = 0;
        let mut rest = doc.trim();
        let entity_ok = |text: &str| {
            text.match_indices('&')
                .all(|(i, _)| ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].iter().any(|e| text[i..].starts_with(e)))
        };
        while !rest.is_empty() {
            let Some(open) = rest.find('<') else {
                return if stack.is_empty() { Err("text after the root".into()) } else { Err("unclosed".into()) };
            };
            let text = &rest[..open];
            if !entity_ok(text) || text.contains('>') {
                return Err(format!("bad text {text:?}"));
            }
            if stack.is_empty() && !text.trim().is_empty() {
                return Err(format!("text outside the root: {text:?}"));
            }
            let close = rest[open..].find('>').ok_or("a tag without its `>`")? + open;
            let tag = &rest[open + 1..close];
            rest = &rest[close + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                match stack.pop() {
                    Some(open) if open == name.trim() => {}
                    other => return Err(format!("</{name}> closes {other:?}")),
                }
                continue;
            }
            let empty = tag.ends_with('/');
            let body = tag.trim_end_matches('/');
            let name: String =
                body.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == ':').collect();
            if name.is_empty() {
                return Err(format!("a tag without a name: <{tag}>"));
            }
            // Attributes: name="value" pairs, nothing else.
            let mut attrs = body[name.len()..].trim();
            let mut seen = Vec::new();
            while !attrs.is_empty() {
                let eq = attrs.find("=\"").ok_or_else(|| format!("unquoted attribute in <{tag}>"))?;
                let key = attrs[..eq].trim();
                if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':') {
                    return Err(format!("bad attribute name {key:?} in <{tag}>"));
                }
                if seen.contains(&key) {
                    return Err(format!("attribute {key} twice in <{tag}>"));
                }
                seen.push(key);
                let value_end =
                    attrs[eq + 2..].find('"').ok_or("an attribute value without its closing quote")? + eq + 2;
                let value = &attrs[eq + 2..value_end];
                if value.contains('<') || !entity_ok(value) {
                    return Err(format!("bad attribute value {value:?}"));
                }
                attrs = attrs[value_end + 1..].trim_start();
            }
            if stack.is_empty() {
                roots += 1;
                if roots > 1 {
                    return Err("two roots".into());
                }
            }
            elements += 1;
            if !empty {
                stack.push(name);
            }
        }
        if !stack.is_empty() {
            return Err(format!("unclosed: {stack:?}"));
        }
        Ok(elements)
    }

    #[test]
    fn the_checker_is_strict() {
        assert_eq!(well_formed(r#"<a x="1"><b/>t &amp; u</a>"#), Ok(2));
        for bad in
            ["<a><b></a></b>", "<a>", "<a x=1/>", "<a>&</a>", "<a/><b/>", r#"<a x="<"/>"#, "text", "<a>x > y</a>"]
        {
            assert!(well_formed(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_drill_renders_as_well_formed_svg_with_its_bars_band_and_marks() {
        let mut drill = passing();
        drill.kind = super::super::Kind::KillLeader;
        drill.settle();
        drill.timeline = Timeline {
            end: 3_000_000_000,
            writes: vec![5_000_000, 6_000_000, 7_000_000, 2_500_000_000],
            errors: vec![1_500_000_000],
            spans: vec![
                Span { from: 0, to: 1_000_000_000, leader: Some(1) },
                Span { from: 1_000_000_000, to: 1_400_000_000, leader: None },
                Span { from: 1_400_000_000, to: 3_000_000_000, leader: Some(2) },
            ],
            fault: 1_000_000_000,
            restored: Some(2_000_000_000),
            detected: Some(1_200_000_000),
            elected: Some(2_500_000_000),
            gap: (2_493_000_000, 7_000_000),
        };
        drill.method = "a <quoted> & 'odd' command".into();
        let svg = render(&drill);
        let elements = well_formed(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""), "{svg}");
        // Two buckets of writes (three in the first 10 ms, one later), one of errors.
        let green = svg.split(r##"<g fill="#2e7d32">"##).nth(1).unwrap().split("</g>").next().unwrap();
        assert_eq!(green.matches("<rect").count(), 2, "{green}");
        let red = svg.split(r##"<g fill="#c62828">"##).nth(1).unwrap().split("</g>").next().unwrap();
        assert_eq!(red.matches("<rect").count(), 1, "{red}");
        assert!(svg.contains("a &lt;quoted&gt; &amp; &apos;odd&apos; command"), "{svg}");
        for label in [
            "kill-leader node1",
            "detected (1200 ms)",
            "node2 writes (2500 ms)",
            "restored (2000 ms)",
            ">node1<",
            ">node2<",
            "<title>none</title>",
            "2 s</text>",
        ] {
            assert!(svg.contains(label), "{label} missing:\n{svg}");
        }
        assert!(elements > 15, "{elements}");
        assert_eq!(escape("a<b & 'c'"), "a&lt;b &amp; &apos;c&apos;");
    }
}
