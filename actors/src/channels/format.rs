//! Text shaping for chat platforms: splitting long replies at the platform's limit, and the
//! model's Markdown rendered into the small HTML subset Telegram accepts.

use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Options, Parser, Tag, TagEnd};

/// Length as the chat platforms count it (UTF-16 code units).
fn units(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

/// Split `text` into parts of at most `limit` UTF-16 units, preferring paragraph breaks, then
/// line breaks, then spaces; a word longer than the limit is cut.
pub fn split_message(text: &str, limit: usize) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = text.trim();
    while units(rest) > limit {
        // The longest prefix within the limit, at a char boundary.
        let mut end = 0;
        let mut used = 0;
        for (i, c) in rest.char_indices() {
            if used + c.len_utf16() > limit {
                break;
            }
            used += c.len_utf16();
            end = i + c.len_utf8();
        }
        let window = &rest[..end];
        let cut = ["\n\n", "\n", " "]
            .iter()
            .filter_map(|sep| window.rfind(sep).filter(|&i| i > end / 2))
            .next()
            .unwrap_or(end);
        let (head, tail) = rest.split_at(cut);
        parts.push(head.trim_end().to_string());
        rest = tail.trim_start();
    }
    if !rest.is_empty() || parts.is_empty() {
        parts.push(rest.to_string());
    }
    parts
}

fn escape(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
}

/// Markdown as Telegram HTML (`parse_mode=HTML`): bold, italic, strike, code, pre, links;
/// headings become bold lines, list items bullets. Everything else is escaped text.
pub fn markdown_to_telegram_html(markdown: &str) -> String {
    let mut out = String::with_capacity(markdown.len() + 32);
    let mut lists: Vec<Option<u64>> = Vec::new();
    let options = Options::ENABLE_STRIKETHROUGH;
    for event in Parser::new_ext(markdown, options) {
        match event {
            Event::Start(tag) => match tag {
                Tag::Strong => out.push_str("<b>"),
                Tag::Emphasis => out.push_str("<i>"),
                Tag::Strikethrough => out.push_str("<s>"),
                Tag::Heading { .. } => out.push_str("<b>"),
                Tag::CodeBlock(kind) => {
                    match kind {
                        CodeBlockKind::Fenced(lang) if !lang.is_empty() => {
                            out.push_str("<pre><code class=\"language-");
                            escape(&mut out, lang.split_whitespace().next().unwrap_or(""));
                            out.push_str("\">");
                        }
                        _ => out.push_str("<pre><code>"),
                    };
                }
                Tag::Link { dest_url, .. } => {
                    out.push_str("<a href=\"");
                    escape(&mut out, &dest_url);
                    out.push_str("\">");
                }
                Tag::List(start) => lists.push(start),
                Tag::Item => {
                    let depth = lists.len().saturating_sub(1);
                    out.push_str(&"  ".repeat(depth));
                    match lists.last_mut() {
                        Some(Some(n)) => {
                            out.push_str(&format!("{n}. "));
                            *n += 1;
                        }
                        _ => out.push_str("• "),
                    }
                }
                Tag::BlockQuote(_) => out.push_str("<blockquote>"),
                _ => {}
            },
            Event::End(tag) => match tag {
                TagEnd::Strong => out.push_str("</b>"),
                TagEnd::Emphasis => out.push_str("</i>"),
                TagEnd::Strikethrough => out.push_str("</s>"),
                TagEnd::Heading(level) => {
                    out.push_str("</b>");
                    out.push_str(if level == HeadingLevel::H1 {
                        "\n\n"
                    } else {
                        "\n"
                    });
                }
                TagEnd::CodeBlock => {
                    while out.ends_with('\n') {
                        out.pop();
                    }
                    out.push_str("</code></pre>\n\n");
                }
                TagEnd::Link => out.push_str("</a>"),
                TagEnd::Paragraph => out.push_str("\n\n"),
                TagEnd::Item if !out.ends_with('\n') => out.push('\n'),
                TagEnd::List(_) => {
                    lists.pop();
                    if lists.is_empty() {
                        out.push('\n');
                    }
                }
                TagEnd::BlockQuote(_) => {
                    while out.ends_with('\n') {
                        out.pop();
                    }
                    out.push_str("</blockquote>\n\n");
                }
                _ => {}
            },
            Event::Text(t) => escape(&mut out, &t),
            Event::Code(t) => {
                out.push_str("<code>");
                escape(&mut out, &t);
                out.push_str("</code>");
            }
            Event::SoftBreak | Event::HardBreak => out.push('\n'),
            Event::Rule => out.push_str("———\n\n"),
            Event::Html(t) | Event::InlineHtml(t) => escape(&mut out, &t),
            _ => {}
        }
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_the_limit_on_breaks() {
        let text = format!("{}\n\n{}", "a".repeat(3000), "b".repeat(3000));
        let parts = split_message(&text, 4096);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], "a".repeat(3000));
        let long = "word ".repeat(2000);
        for p in split_message(&long, 4096) {
            assert!(units(&p) <= 4096);
        }
        let one = "x".repeat(10_000);
        let parts = split_message(&one, 4096);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts.concat(), one);
        // UTF-16: an emoji is two units.
        let emoji = "😀".repeat(3000);
        assert!(split_message(&emoji, 4096).iter().all(|p| units(p) <= 4096));
        assert_eq!(split_message("hi", 4096), vec!["hi"]);
    }

    #[test]
    fn markdown_becomes_telegram_html() {
        assert_eq!(
            markdown_to_telegram_html("**Hi** _you_ <b> & `x<y`"),
            "<b>Hi</b> <i>you</i> &lt;b&gt; &amp; <code>x&lt;y</code>"
        );
        assert_eq!(markdown_to_telegram_html("- one\n- two"), "• one\n• two");
        assert_eq!(
            markdown_to_telegram_html("```rust\nfn a() {}\n```"),
            "<pre><code class=\"language-rust\">fn a() {}</code></pre>"
        );
        assert_eq!(
            markdown_to_telegram_html("[site](https://e.x/?a=1&b=2)"),
            "<a href=\"https://e.x/?a=1&amp;b=2\">site</a>"
        );
    }
}
