//! Rule conditions: a small expression language over features and event fields.
//!
//! ```text
//! condition  := or
//! or         := and ("or" and)*
//! and        := unary ("and" unary)*
//! unary      := "not" unary | "(" or ")" | comparison
//! comparison := FEATURE op (NUMBER | FEATURE)
//!             | FIELD ("==" | "!=") STRING
//!             | FIELD "in" "[" STRING ("," STRING)* "]"
//! op         := "<" | "<=" | ">" | ">=" | "==" | "!="
//! FIELD      := country | currency | mcc | channel
//! ```
//!
//! A comparison that reads a missing value (a feature that is NaN, a field the event lacks) is
//! false; `not` turns that into true.

use vigil_models::FeatureVector;
use vigil_models::features;
use vigil_schema::{Channel, Country, Currency, Mcc};

use crate::event::Event;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    fn holds(self, a: f32, b: f32) -> bool {
        match self {
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Gt => a > b,
            Op::Ge => a >= b,
            Op::Eq => a == b,
            Op::Ne => a != b,
        }
    }
}

/// An event field compared with literals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Country,
    Currency,
    Mcc,
    Channel,
}

impl Field {
    fn by_name(name: &str) -> Option<Self> {
        Some(match name {
            "country" => Field::Country,
            "currency" => Field::Currency,
            "mcc" => Field::Mcc,
            "channel" => Field::Channel,
            _ => return None,
        })
    }

    fn code(self, literal: &str) -> Result<u32, String> {
        let code = match self {
            Field::Country => Country::parse(literal).map(|c| u32::from(c.code())),
            Field::Currency => Currency::parse(literal).map(Currency::code),
            Field::Mcc => Mcc::parse(literal).map(|m| u32::from(m.code())),
            Field::Channel => Channel::parse(literal).map(|c| c as u32),
        };
        code.map_err(|why| format!("\"{literal}\" {why}"))
    }

    fn of(self, e: &Event) -> Option<u32> {
        match self {
            Field::Country => e.country.map(|c| u32::from(c.code())),
            Field::Currency => Some(e.currency.code()),
            Field::Mcc => e.mcc.map(|m| u32::from(m.code())),
            Field::Channel => e.channel.map(|c| c as u32),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Operand {
    Feature(u16),
    Number(f32),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    All(Vec<Expr>),
    Any(Vec<Expr>),
    Not(Box<Expr>),
    Comparison(Comparison),
}

/// A leaf of a condition: a feature against a number or another feature, or an event field
/// against literals.
#[derive(Debug, Clone, PartialEq)]
pub enum Comparison {
    Feature {
        feature: u16,
        op: Op,
        right: Operand,
    },
    Field {
        field: Field,
        values: Vec<u32>,
        negate: bool,
    },
}

impl Comparison {
    pub fn holds(&self, x: &FeatureVector, e: &Event) -> bool {
        match self {
            Comparison::Feature { feature, op, right } => {
                let a = x.0[usize::from(*feature)];
                let b = match *right {
                    Operand::Feature(f) => x.0[usize::from(f)],
                    Operand::Number(n) => n,
                };
                // NaN (missing) makes every comparison false, `!=` included.
                !a.is_nan() && !b.is_nan() && op.holds(a, b)
            }
            Comparison::Field {
                field,
                values,
                negate,
            } => field.of(e).is_some_and(|v| values.contains(&v) != *negate),
        }
    }
}

impl Expr {
    /// The condition's value by walking the tree: the reference the compiled form
    /// ([`super::condition::Condition`]) is tested against.
    #[cfg(test)]
    pub fn eval(&self, x: &FeatureVector, e: &Event) -> bool {
        match self {
            Expr::All(all) => all.iter().all(|c| c.eval(x, e)),
            Expr::Any(any) => any.iter().any(|c| c.eval(x, e)),
            Expr::Not(inner) => !inner.eval(x, e),
            Expr::Comparison(c) => c.holds(x, e),
        }
    }

    /// The features this condition reads, each once, in order of appearance.
    pub fn features_read(&self, out: &mut Vec<u16>) {
        let mut push = |f: u16| {
            if !out.contains(&f) {
                out.push(f);
            }
        };
        match self {
            Expr::All(children) | Expr::Any(children) => {
                for c in children {
                    c.features_read(out);
                }
            }
            Expr::Not(inner) => inner.features_read(out),
            Expr::Comparison(Comparison::Feature { feature, right, .. }) => {
                push(*feature);
                if let Operand::Feature(f) = right {
                    push(*f);
                }
            }
            Expr::Comparison(Comparison::Field { .. }) => {}
        }
    }
}

/// A condition that cannot be parsed, and where (a character offset in the condition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub at: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Number(f32),
    Str(String),
    Op(Op),
    Open,
    Close,
    OpenList,
    CloseList,
    Comma,
    End,
}

fn lex(text: &str) -> Result<Vec<(usize, Token)>, SyntaxError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = vec![];
    let mut i = 0;
    let fail = |at, message: String| Err(SyntaxError { at, message });
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let token = match c {
            '(' => Token::Open,
            ')' => Token::Close,
            '[' => Token::OpenList,
            ']' => Token::CloseList,
            ',' => Token::Comma,
            '<' | '>' | '=' | '!' => {
                let two = chars.get(i + 1) == Some(&'=');
                let op = match (c, two) {
                    ('<', false) => Op::Lt,
                    ('<', true) => Op::Le,
                    ('>', false) => Op::Gt,
                    ('>', true) => Op::Ge,
                    ('=', true) => Op::Eq,
                    ('!', true) => Op::Ne,
                    _ => {
                        return fail(
                            start,
                            format!("`{c}` is not an operator; use <, <=, >, >=, == or !="),
                        );
                    }
                };
                i += usize::from(two);
                Token::Op(op)
            }
            '"' => {
                let end = chars[i + 1..].iter().position(|&c| c == '"');
                let Some(len) = end else {
                    return fail(start, "a string is not closed".into());
                };
                let s: String = chars[i + 1..i + 1 + len].iter().collect();
                i += len + 1;
                Token::Str(s)
            }
            c if c.is_ascii_digit() || c == '.' || c == '-' => {
                let len = chars[i..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                    .count();
                let raw: String = chars[i..i + len].iter().filter(|&&c| c != '_').collect();
                i += len - 1;
                match raw.parse::<f32>() {
                    Ok(n) if n.is_finite() => Token::Number(n),
                    _ => return fail(start, format!("`{raw}` is not a number")),
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let len = chars[i..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                    .count();
                let word: String = chars[i..i + len].iter().collect();
                i += len - 1;
                Token::Word(word)
            }
            c => return fail(start, format!("unexpected `{c}`")),
        };
        tokens.push((start, token));
        i += 1;
    }
    tokens.push((chars.len(), Token::End));
    Ok(tokens)
}

/// Parses a condition.
pub fn parse(text: &str) -> Result<Expr, SyntaxError> {
    let tokens = lex(text)?;
    let mut parser = Parser { tokens, pos: 0 };
    let expr = parser.or()?;
    match parser.peek() {
        Token::End => Ok(expr),
        other => Err(parser.error(format!(
            "expected `and`, `or` or the end, found {}",
            describe(other)
        ))),
    }
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    pos: usize,
}

fn describe(token: &Token) -> String {
    match token {
        Token::Word(w) => format!("`{w}`"),
        Token::Number(n) => format!("the number {n}"),
        Token::Str(s) => format!("\"{s}\""),
        Token::Op(_) => "an operator".into(),
        Token::Open => "`(`".into(),
        Token::Close => "`)`".into(),
        Token::OpenList => "`[`".into(),
        Token::CloseList => "`]`".into(),
        Token::Comma => "`,`".into(),
        Token::End => "the end of the condition".into(),
    }
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.pos].1
    }

    fn next(&mut self) -> Token {
        let token = self.tokens[self.pos].1.clone();
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
        token
    }

    fn error(&self, message: String) -> SyntaxError {
        SyntaxError {
            at: self.tokens[self.pos].0,
            message,
        }
    }

    fn keyword(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Token::Word(w) if w == word) {
            self.next();
            return true;
        }
        false
    }

    fn or(&mut self) -> Result<Expr, SyntaxError> {
        let mut any = vec![self.and()?];
        while self.keyword("or") {
            any.push(self.and()?);
        }
        Ok(if any.len() == 1 {
            any.remove(0)
        } else {
            Expr::Any(any)
        })
    }

    fn and(&mut self) -> Result<Expr, SyntaxError> {
        let mut all = vec![self.unary()?];
        while self.keyword("and") {
            all.push(self.unary()?);
        }
        Ok(if all.len() == 1 {
            all.remove(0)
        } else {
            Expr::All(all)
        })
    }

    fn unary(&mut self) -> Result<Expr, SyntaxError> {
        if self.keyword("not") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if *self.peek() == Token::Open {
            self.next();
            let inner = self.or()?;
            if self.next() != Token::Close {
                return Err(self.error("expected `)`".into()));
            }
            return Ok(inner);
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, SyntaxError> {
        let Token::Word(name) = self.peek().clone() else {
            return Err(self.error(format!(
                "expected a feature or field name, found {}",
                describe(self.peek())
            )));
        };
        if let Some(field) = Field::by_name(&name) {
            self.next();
            return self.field_comparison(field);
        }
        let Some(feature) = features::find(&name) else {
            return Err(self.error(format!(
                "unknown feature or field `{name}` (see docs/rules.md for the list)"
            )));
        };
        self.next();
        let Token::Op(op) = self.next() else {
            return Err(self.error(format!("expected a comparison after `{name}`")));
        };
        let at = self.tokens[self.pos].0;
        let right = match self.next() {
            Token::Number(n) => Operand::Number(n),
            Token::Word(w) => match features::find(&w) {
                Some(f) => Operand::Feature(f as u16),
                None => {
                    return Err(SyntaxError {
                        at,
                        message: format!("unknown feature `{w}`"),
                    });
                }
            },
            other => {
                return Err(self.error(format!(
                    "expected a number or a feature, found {}",
                    describe(&other)
                )));
            }
        };
        Ok(Expr::Comparison(Comparison::Feature {
            feature: feature as u16,
            op,
            right,
        }))
    }

    fn field_comparison(&mut self, field: Field) -> Result<Expr, SyntaxError> {
        let at = self.tokens[self.pos].0;
        let literal = |s: &str| field.code(s).map_err(|message| SyntaxError { at, message });
        match self.next() {
            Token::Op(op @ (Op::Eq | Op::Ne)) => match self.next() {
                Token::Str(s) => Ok(Expr::Comparison(Comparison::Field {
                    field,
                    values: vec![literal(&s)?],
                    negate: op == Op::Ne,
                })),
                _ => Err(self.error("expected a quoted value".into())),
            },
            Token::Word(w) if w == "in" => {
                if self.next() != Token::OpenList {
                    return Err(self.error("expected `[` after `in`".into()));
                }
                let mut values = vec![];
                loop {
                    match self.next() {
                        Token::Str(s) => values.push(literal(&s)?),
                        _ => return Err(self.error("expected a quoted value".into())),
                    }
                    match self.next() {
                        Token::Comma => {}
                        Token::CloseList => break,
                        _ => return Err(self.error("expected `,` or `]`".into())),
                    }
                }
                Ok(Expr::Comparison(Comparison::Field {
                    field,
                    values,
                    negate: false,
                }))
            }
            _ => Err(self.error("event fields compare with ==, != or in [...]".into())),
        }
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use vigil_models::features::index;
    use vigil_schema::Timestamp;

    pub fn event(country: Option<&str>) -> Event {
        Event {
            transaction: 1,
            occurred_at: Timestamp::parse("2026-01-01T00:00:00Z").unwrap(),
            card: 2,
            customer: None,
            merchant: 3,
            device: None,
            amount_minor: 100,
            currency: Currency::parse("USD").unwrap(),
            country: country.map(|c| Country::parse(c).unwrap()),
            mcc: None,
            channel: Some(Channel::Ecom),
            geo: None,
        }
    }

    fn features(amount: f32, count: f32) -> FeatureVector {
        let mut x = FeatureVector::default();
        x.0[index::AMOUNT] = amount;
        x.0[index::window(index::CARD_WINDOWS, 0, 0)] = count;
        x
    }

    #[test]
    fn evaluates_with_precedence_and_missing_values() {
        let e = event(Some("NG"));
        let cond = parse("amount > 10_000 and card_count_10m >= 3 or country in [\"NG\", \"RU\"]")
            .unwrap();
        assert!(
            cond.eval(&features(1.0, 0.0), &e),
            "or binds looser than and"
        );
        assert!(!cond.eval(&features(1.0, 0.0), &event(Some("DE"))));
        assert!(cond.eval(&features(20_000.0, 3.0), &event(None)));

        let missing = parse("card_travel_kmh > 900").unwrap();
        assert!(!missing.eval(&features(1.0, 0.0), &e));
        assert!(
            parse("not card_travel_kmh > 900")
                .unwrap()
                .eval(&features(1.0, 0.0), &e)
        );
        assert!(
            !parse("card_travel_kmh != 5")
                .unwrap()
                .eval(&features(1.0, 0.0), &e)
        );
        assert!(
            parse("channel == \"ecom\" and not (mcc == \"5411\")")
                .unwrap()
                .eval(&features(1.0, 0.0), &e)
        );
        assert!(
            parse("amount > card_count_10m")
                .unwrap()
                .eval(&features(5.0, 1.0), &e)
        );
    }

    #[test]
    fn errors_say_what_and_where() {
        let err = parse("card_cnt_10m > 3").unwrap_err();
        assert_eq!(err.at, 0);
        assert!(
            err.message
                .contains("unknown feature or field `card_cnt_10m`"),
            "{}",
            err.message
        );
        let err = parse("amount > 3 and").unwrap_err();
        assert_eq!(err.at, 14);
        let err = parse("country == \"Germany\"").unwrap_err();
        assert!(err.message.contains("alpha-2"), "{}", err.message);
        assert!(parse("amount = 3").is_err());
        assert!(parse("(amount > 3").is_err());
        assert!(parse("channel in [\"web\"]").is_err());
        assert!(parse("amount > 3 amount").is_err());
    }
}
