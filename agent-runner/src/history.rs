//! Trimming long conversations to a token budget: the oldest turns go first, and a turn is
//! dropped whole, so a `tool_use` never loses its `tool_result` (the API rejects that).

use crate::types::{ContentBlock, Message, Role};

/// A cheap, conservative token estimate (about four characters a token, plus overhead).
pub fn estimate_tokens(m: &Message) -> usize {
    let chars: usize = m
        .content
        .iter()
        .map(|b| match b {
            ContentBlock::Text { text } => text.len(),
            ContentBlock::ToolUse { name, input, .. } => name.len() + input.to_string().len(),
            ContentBlock::ToolResult { content, .. } => content.len(),
            ContentBlock::Unsupported => 0,
        })
        .sum();
    chars / 4 + 8
}

/// Keep the newest turns that fit in `budget` tokens. A turn starts at a user message that a
/// person wrote (not tool results); history always starts at such a message (a window cut by
/// a row limit may begin mid-turn) and the newest turn is always kept.
pub fn trim_to_budget(messages: Vec<Message>, budget: usize) -> Vec<Message> {
    let starts: Vec<usize> = messages
        .iter()
        .enumerate()
        .filter(|(_, m)| m.role == Role::User && !m.is_tool_results())
        .map(|(i, _)| i)
        .collect();
    let Some(&first) = starts.first() else {
        return Vec::new();
    };
    let total: usize = messages[first..].iter().map(estimate_tokens).sum();
    if total <= budget || starts.len() <= 1 {
        return messages.into_iter().skip(first).collect();
    }
    let mut cut = first;
    let mut remaining = total;
    for window in starts.windows(2) {
        if remaining <= budget {
            break;
        }
        let (from, to) = (window[0], window[1]);
        remaining -= messages[from..to]
            .iter()
            .map(estimate_tokens)
            .sum::<usize>();
        cut = to;
    }
    messages.into_iter().skip(cut).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn turn(text: &str, with_tool: bool) -> Vec<Message> {
        let mut v = vec![Message::user_text(text)];
        if with_tool {
            v.push(Message {
                role: Role::Assistant,
                content: vec![ContentBlock::ToolUse {
                    id: "t".into(),
                    name: "x".into(),
                    input: json!({}),
                }],
            });
            v.push(Message {
                role: Role::User,
                content: vec![ContentBlock::ToolResult {
                    tool_use_id: "t".into(),
                    content: "r".repeat(400),
                    is_error: false,
                }],
            });
        }
        v.push(Message {
            role: Role::Assistant,
            content: vec![ContentBlock::text("answer ".repeat(50))],
        });
        v
    }

    #[test]
    fn oldest_whole_turns_go_first() {
        let mut all = Vec::new();
        for i in 0..5 {
            all.extend(turn(&format!("question {i}"), i % 2 == 0));
        }
        let trimmed = trim_to_budget(all.clone(), 300);
        assert!(trimmed.len() < all.len());
        // Starts at a person's message, and every tool_use keeps its result.
        assert!(trimmed[0].role == Role::User && !trimmed[0].is_tool_results());
        assert_eq!(trimmed.last(), all.last());
        for (i, m) in trimmed.iter().enumerate() {
            if m.content
                .iter()
                .any(|b| matches!(b, ContentBlock::ToolUse { .. }))
            {
                assert!(trimmed[i + 1].is_tool_results());
            }
        }
        // A budget that fits everything keeps everything; the newest turn always stays.
        assert_eq!(trim_to_budget(all.clone(), 1_000_000).len(), all.len());
        assert_eq!(trim_to_budget(all.clone(), 1).len(), 4);
    }
}
