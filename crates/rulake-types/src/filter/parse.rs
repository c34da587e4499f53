//! The readable form of a filter, as the command line takes it:
//!
//! ```text
//! lang = "en" and year >= 2024
//! not (lang in ("de", "fr") or title is null)
//! tags contains "news" and title starts with "How"
//! published >= "2024-01-01T00:00:00Z"
//! ```
//!
//! Grammar (keywords in any case; `and` binds tighter than `or`):
//! `expr = and ("or" and)*`, `and = unary ("and" unary)*`,
//! `unary = "not" unary | "(" expr ")" | predicate`, and a predicate is a
//! column followed by `= != < <= > >=` and a literal, `in (literal, ...)`,
//! `is [not] null`, `contains "s"` or `starts with "s"`. Literals are
//! strings in double or single quotes (backslash escapes the quote),
//! integers, floats, `true` and `false`. Dates and instants are strings;
//! the column's type decides what they mean.

use super::{Filter, FilterError};
use crate::payload::Value;

/// Parse the readable form into a [`Filter`].
pub fn parse(text: &str) -> Result<Filter, FilterError> {
    let tokens = lex(text)?;
    let mut p = Parser { tokens, at: 0 };
    let f = p.expr(0)?;
    match p.tokens.get(p.at) {
        None => Ok(f),
        Some((pos, t)) => Err(syntax(*pos, &format!("unexpected {t:?}"))),
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Num(String),
    Op(&'static str),
}

fn syntax(at: usize, reason: &str) -> FilterError {
    FilterError::Syntax {
        at,
        reason: reason.to_owned(),
    }
}

fn lex(text: &str) -> Result<Vec<(usize, Tok)>, FilterError> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (pos, c) = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '"' || c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                let Some(&(_, d)) = chars.get(i) else {
                    return Err(syntax(pos, "unterminated string"));
                };
                i += 1;
                if d == '\\' {
                    if let Some(&(_, e)) = chars.get(i) {
                        s.push(e);
                        i += 1;
                    }
                } else if d == c {
                    break;
                } else {
                    s.push(d);
                }
            }
            out.push((pos, Tok::Str(s)));
            continue;
        }
        if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(|x| x.1.is_ascii_digit()))
        {
            let start = i;
            i += 1;
            while let Some(&(_, d)) = chars.get(i) {
                let after_exponent = matches!(chars[i - 1].1, 'e' | 'E');
                if d.is_ascii_digit()
                    || matches!(d, '.' | 'e' | 'E')
                    || (after_exponent && matches!(d, '+' | '-'))
                {
                    i += 1;
                } else {
                    break;
                }
            }
            out.push((pos, Tok::Num(chars[start..i].iter().map(|x| x.1).collect())));
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while chars
                .get(i)
                .is_some_and(|x| x.1.is_alphanumeric() || matches!(x.1, '_' | '.'))
            {
                i += 1;
            }
            out.push((
                pos,
                Tok::Word(chars[start..i].iter().map(|x| x.1).collect()),
            ));
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())]
            .iter()
            .map(|x| x.1)
            .collect();
        let op = ["<=", ">=", "!=", "<>", "=="]
            .into_iter()
            .find(|o| *o == two)
            .or_else(|| {
                ["=", "<", ">", "(", ")", ","]
                    .into_iter()
                    .find(|o| o.starts_with(c))
            });
        match op {
            Some(o) => {
                i += o.len();
                out.push((
                    pos,
                    Tok::Op(match o {
                        "<>" => "!=",
                        "==" => "=",
                        o => o,
                    }),
                ));
            }
            None => return Err(syntax(pos, &format!("unexpected character {c:?}"))),
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<(usize, Tok)>,
    at: usize,
}

impl Parser {
    fn pos(&self) -> usize {
        self.tokens
            .get(self.at)
            .or(self.tokens.last())
            .map_or(0, |t| t.0)
    }

    fn peek_word(&self, w: &str) -> bool {
        matches!(self.tokens.get(self.at), Some((_, Tok::Word(x))) if x.eq_ignore_ascii_case(w))
    }

    fn eat_word(&mut self, w: &str) -> bool {
        let yes = self.peek_word(w);
        if yes {
            self.at += 1;
        }
        yes
    }

    fn eat_op(&mut self, op: &str) -> bool {
        let yes = matches!(self.tokens.get(self.at), Some((_, Tok::Op(o))) if *o == op);
        if yes {
            self.at += 1;
        }
        yes
    }

    fn expect_op(&mut self, op: &str) -> Result<(), FilterError> {
        if self.eat_op(op) {
            Ok(())
        } else {
            Err(syntax(self.pos(), &format!("expected {op:?}")))
        }
    }

    fn expr(&mut self, depth: usize) -> Result<Filter, FilterError> {
        if depth > super::MAX_FILTER_DEPTH {
            return Err(syntax(self.pos(), "nested too deeply"));
        }
        let mut any = vec![self.and(depth)?];
        while self.eat_word("or") {
            any.push(self.and(depth)?);
        }
        Ok(if any.len() == 1 {
            any.remove(0)
        } else {
            Filter::Or(any)
        })
    }

    fn and(&mut self, depth: usize) -> Result<Filter, FilterError> {
        let mut all = vec![self.unary(depth)?];
        while self.eat_word("and") {
            all.push(self.unary(depth)?);
        }
        Ok(if all.len() == 1 {
            all.remove(0)
        } else {
            Filter::And(all)
        })
    }

    fn unary(&mut self, depth: usize) -> Result<Filter, FilterError> {
        if depth > super::MAX_FILTER_DEPTH {
            return Err(syntax(self.pos(), "nested too deeply"));
        }
        if self.eat_word("not") {
            return Ok(Filter::Not(Box::new(self.unary(depth + 1)?)));
        }
        if self.eat_op("(") {
            let f = self.expr(depth + 1)?;
            self.expect_op(")")?;
            return Ok(f);
        }
        self.predicate()
    }

    fn predicate(&mut self) -> Result<Filter, FilterError> {
        let pos = self.pos();
        let column = match self.tokens.get(self.at) {
            Some((_, Tok::Word(w))) => w.clone(),
            _ => return Err(syntax(pos, "expected a column name")),
        };
        self.at += 1;
        if self.eat_word("is") {
            let negated = self.eat_word("not");
            if !self.eat_word("null") {
                return Err(syntax(self.pos(), "expected `null`"));
            }
            let f = Filter::IsNull { column };
            return Ok(if negated { Filter::Not(Box::new(f)) } else { f });
        }
        if self.eat_word("in") {
            self.expect_op("(")?;
            let mut values = vec![self.literal()?];
            while self.eat_op(",") {
                values.push(self.literal()?);
            }
            self.expect_op(")")?;
            return Ok(Filter::In { column, values });
        }
        if self.eat_word("contains") {
            return Ok(Filter::Contains {
                column,
                value: self.string()?,
            });
        }
        if self.eat_word("starts") {
            if !self.eat_word("with") {
                return Err(syntax(self.pos(), "expected `with`"));
            }
            return Ok(Filter::Prefix {
                column,
                prefix: self.string()?,
            });
        }
        let op = match self.tokens.get(self.at) {
            Some((_, Tok::Op(o))) if ["=", "!=", "<", "<=", ">", ">="].contains(o) => *o,
            _ => {
                return Err(syntax(
                    self.pos(),
                    "expected an operator (= != < <= > >= in is contains starts with)",
                ))
            }
        };
        self.at += 1;
        let v = self.literal()?;
        let range = |gt, gte, lt, lte| Filter::Range {
            column: column.clone(),
            gt,
            gte,
            lt,
            lte,
        };
        Ok(match op {
            "=" => Filter::Eq {
                column: column.clone(),
                value: v,
            },
            "!=" => Filter::Not(Box::new(Filter::Eq {
                column: column.clone(),
                value: v,
            })),
            ">" => range(Some(v), None, None, None),
            ">=" => range(None, Some(v), None, None),
            "<" => range(None, None, Some(v), None),
            _ => range(None, None, None, Some(v)),
        })
    }

    fn string(&mut self) -> Result<String, FilterError> {
        match self.literal()? {
            Value::String(s) => Ok(s),
            _ => Err(syntax(self.pos(), "expected a string in quotes")),
        }
    }

    fn literal(&mut self) -> Result<Value, FilterError> {
        let pos = self.pos();
        let Some((_, t)) = self.tokens.get(self.at).cloned() else {
            return Err(syntax(pos, "expected a value"));
        };
        self.at += 1;
        match t {
            Tok::Str(s) => Ok(Value::String(s)),
            Tok::Num(n) => n
                .parse::<i64>()
                .map(Value::Int)
                .or_else(|_| n.parse::<f64>().map(Value::Float))
                .map_err(|_| syntax(pos, &format!("{n:?} is not a number"))),
            Tok::Word(w) if w.eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
            Tok::Word(w) if w.eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
            t => Err(syntax(pos, &format!("expected a value, found {t:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_and_literals() {
        let f = parse(r#"a = "x" or b >= 2 and not c is null"#).unwrap();
        assert_eq!(
            f,
            Filter::Or(vec![
                Filter::Eq {
                    column: "a".into(),
                    value: Value::String("x".into())
                },
                Filter::And(vec![
                    Filter::Range {
                        column: "b".into(),
                        gt: None,
                        gte: Some(Value::Int(2)),
                        lt: None,
                        lte: None
                    },
                    Filter::Not(Box::new(Filter::IsNull { column: "c".into() })),
                ]),
            ])
        );
        assert_eq!(
            parse("x < -1.5e3").unwrap(),
            Filter::Range {
                column: "x".into(),
                gt: None,
                gte: None,
                lt: Some(Value::Float(-1500.0)),
                lte: None
            }
        );
        assert_eq!(
            parse("ok = TRUE").unwrap(),
            Filter::Eq {
                column: "ok".into(),
                value: Value::Bool(true)
            }
        );
    }

    #[test]
    fn errors_say_where() {
        let e = parse(r#"lang = "en" and"#).unwrap_err();
        assert!(matches!(e, FilterError::Syntax { .. }), "{e}");
        let e = parse("lang ~ 1").unwrap_err();
        assert!(matches!(e, FilterError::Syntax { at: 5, .. }), "{e}");
        assert!(parse(r#"a = "unterminated"#).is_err());
        assert!(parse("(a = 1").is_err());
    }
}
