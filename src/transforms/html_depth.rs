//! Caps how deep HTML tags nest before the HTML is parsed. html5ever checks the stack of
//! open elements for every tag, so its time grows with the square of the nesting (100,000
//! nested `div`s took 35 s). A light tag scan, linear in the text, removes the tags that open
//! deeper than the cap (and their closing tags), keeping the text, breaks and images; the
//! conversion reads content past its own, lower, depth limit as plain text anyway.

use std::borrow::Cow;

/// Tags past this depth (as the scan counts it) are removed. Above the conversion's own
/// limit (200 elements), so documents come out the same; each tag the parser reads can cost
/// a walk of this many open elements.
pub const MAX_TAG_DEPTH: usize = 256;

/// Elements without content: they never nest.
const VOID: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
    "wbr",
];

/// Elements whose end the parser implies (a `p` closes the `p` before it...): not counted,
/// so that a page of unclosed paragraphs or cells is not taken for deep nesting.
const IMPLIED_END: &[&str] = &[
    "p", "li", "dt", "dd", "tr", "td", "th", "thead", "tbody", "tfoot", "option", "optgroup",
    "colgroup", "caption", "rb", "rt", "rp", "rtc",
];

/// Elements whose content is text up to their closing tag.
const RAW_TEXT: &[&str] = &[
    "script",
    "style",
    "textarea",
    "title",
    "xmp",
    "iframe",
    "noembed",
    "noframes",
    "noscript",
    "plaintext",
];

#[derive(Debug, PartialEq, Eq)]
enum Token {
    /// Text, comments, doctypes: passed on.
    Other,
    Open {
        name: String,
        self_closing: bool,
    },
    Close {
        name: String,
    },
    /// The content of a raw-text element.
    Raw,
}

/// Splits HTML into tokens, as byte ranges.
struct Tokens<'a> {
    html: &'a [u8],
    at: usize,
    /// After the open tag of a raw-text element: its name.
    raw: Option<String>,
}

impl Iterator for Tokens<'_> {
    type Item = (Token, std::ops::Range<usize>);

    fn next(&mut self) -> Option<Self::Item> {
        let (html, start) = (self.html, self.at);
        if start >= html.len() {
            return None;
        }
        let rest = &html[start..];
        if let Some(name) = self.raw.take() {
            let end = find_close(rest, &name).map_or(html.len(), |i| start + i);
            self.at = end;
            return Some((Token::Raw, start..end));
        }
        let after = |i: Option<usize>, skip: usize| i.map_or(html.len(), |i| start + i + skip);
        let (token, end) = if rest.starts_with(b"<!--") {
            (Token::Other, after(find(rest, b"-->"), 3))
        } else if rest.starts_with(b"<!") || rest.starts_with(b"<?") {
            (Token::Other, after(find(rest, b">"), 1))
        } else if rest.starts_with(b"</") && rest.get(2).is_some_and(u8::is_ascii_alphabetic) {
            let name = tag_name(&rest[2..]);
            (Token::Close { name }, after(find(rest, b">"), 1))
        } else if rest.starts_with(b"<") && rest.get(1).is_some_and(u8::is_ascii_alphabetic) {
            let name = tag_name(&rest[1..]);
            let end = tag_end(rest).map_or(html.len(), |i| start + i + 1);
            let self_closing = end >= 2 && html[end - 2] == b'/';
            if RAW_TEXT.contains(&name.as_str()) && !self_closing {
                self.raw = Some(name.clone());
            }
            (Token::Open { name, self_closing }, end)
        } else {
            let next = rest[1..].iter().position(|&b| b == b'<');
            (Token::Other, after(next, 1))
        };
        self.at = end;
        Some((token, start..end))
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Where `</name` starts, case-insensitively.
fn find_close(hay: &[u8], name: &str) -> Option<usize> {
    let n = name.len() + 2;
    hay.windows(n)
        .position(|w| w.starts_with(b"</") && w[2..].eq_ignore_ascii_case(name.as_bytes()))
}

fn tag_name(bytes: &[u8]) -> String {
    let end = bytes
        .iter()
        .position(|b| b.is_ascii_whitespace() || matches!(b, b'/' | b'>'))
        .unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase()
}

/// The `>` that ends a start tag, skipping quoted attribute values.
fn tag_end(tag: &[u8]) -> Option<usize> {
    let mut quote: Option<u8> = None;
    for (i, &b) in tag.iter().enumerate() {
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if b == b'>' => return Some(i),
            None => {}
        }
    }
    None
}

fn nests(name: &str, self_closing: bool) -> bool {
    !self_closing && !VOID.contains(&name) && !IMPLIED_END.contains(&name)
}

/// The HTML with the tags past `limit` removed; borrowed when none is that deep.
pub fn cap_nesting(html: &str, limit: usize) -> Cow<'_, str> {
    let tokens = || Tokens {
        html: html.as_bytes(),
        at: 0,
        raw: None,
    };
    let (mut depth, mut deepest) = (0usize, 0usize);
    for (token, _) in tokens() {
        match token {
            Token::Open { name, self_closing } if nests(&name, self_closing) => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            Token::Close { name } if nests(&name, false) => depth = depth.saturating_sub(1),
            _ => {}
        }
        if deepest > limit {
            break;
        }
    }
    if deepest <= limit {
        return Cow::Borrowed(html);
    }
    let mut out = String::with_capacity(html.len());
    let mut depth = 0usize;
    let mut dropping_raw = false;
    for (token, range) in tokens() {
        let keep = match token {
            Token::Open { name, self_closing } => {
                let deep = depth >= limit;
                if nests(&name, self_closing) {
                    depth += 1;
                }
                dropping_raw = deep && RAW_TEXT.contains(&name.as_str());
                !deep || !nests(&name, self_closing) && !dropping_raw
            }
            Token::Close { name } => {
                if nests(&name, false) {
                    depth = depth.saturating_sub(1);
                }
                depth < limit && !(dropping_raw && RAW_TEXT.contains(&name.as_str()))
            }
            Token::Raw => !dropping_raw,
            Token::Other => true,
        };
        if keep {
            out.push_str(&html[range]);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shallow_html_is_left_as_it_is() {
        let html = r#"<p>a<p>b<ul><li>x<li>y</ul><img src="a.png"><a title="1>2" href=x>l</a><!-- <div> --><script>"<div>"</script>"#;
        assert!(matches!(cap_nesting(html, 3), Cow::Borrowed(_)));
        let many_paragraphs = "<p>x".repeat(10_000);
        assert!(matches!(cap_nesting(&many_paragraphs, 3), Cow::Borrowed(_)));
    }

    #[test]
    fn tags_past_the_limit_are_removed_with_their_closing_tags() {
        let html =
            "<div><b><i><u>deep<br><img src=a.png><script>x()</script></u></i></b>after</div>";
        assert_eq!(
            cap_nesting(html, 2),
            "<div><b>deep<br><img src=a.png></b>after</div>"
        );
    }

    #[test]
    fn nesting_is_capped_in_linear_time() {
        let n = 200_000;
        let html = "<div>".repeat(n) + "x" + &"</div>".repeat(n);
        let capped = cap_nesting(&html, MAX_TAG_DEPTH);
        assert_eq!(
            capped,
            "<div>".repeat(MAX_TAG_DEPTH) + "x" + &"</div>".repeat(MAX_TAG_DEPTH)
        );
    }
}
