//! The search languages the stand-ins read, read the way their vendors read them: conditions
//! `FIELD OPERATOR VALUE` joined by AND and OR (AND binding tighter) and grouped by
//! parentheses, where a field or a value is a bare word or a string quoted with `'` or `"` in
//! which a backslash escapes the next character. That is the shape of Request Tracker's
//! TicketSQL, Jira's JQL, Freshdesk's ticket filter and the `field:value` terms of Zammad's
//! Elasticsearch query string: enough that a value breaking out of its quotes changes what a
//! stand-in finds, as it would at the vendor.

#[derive(Debug)]
pub enum Query {
    Condition {
        field: String,
        operator: String,
        value: String,
    },
    And(Box<Query>, Box<Query>),
    Or(Box<Query>, Box<Query>),
}

impl Query {
    /// Whether the query holds, `condition` deciding each `(field, operator, value)`.
    pub fn holds(&self, condition: &dyn Fn(&str, &str, &str) -> bool) -> bool {
        match self {
            Self::Condition {
                field,
                operator,
                value,
            } => condition(field, operator, value),
            Self::And(a, b) => a.holds(condition) && b.holds(condition),
            Self::Or(a, b) => a.holds(condition) || b.holds(condition),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Operator(String),
    Open,
    Close,
}

const OPERATOR_CHARS: &[char] = &['=', '!', '<', '>', ':', '~'];

fn tokens(text: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '(' || c == ')' {
            chars.next();
            out.push(if c == '(' { Token::Open } else { Token::Close });
        } else if c == '\'' || c == '"' {
            chars.next();
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some('\\') => value.push(chars.next().ok_or("a lone backslash at the end")?),
                    Some(q) if q == c => break,
                    Some(other) => value.push(other),
                    None => return Err(format!("unterminated string {c}{value}")),
                }
            }
            out.push(Token::Quoted(value));
        } else if OPERATOR_CHARS.contains(&c) {
            let mut operator = String::new();
            while let Some(&o) = chars.peek().filter(|o| OPERATOR_CHARS.contains(o)) {
                operator.push(o);
                chars.next();
            }
            out.push(Token::Operator(operator));
        } else {
            let mut word = String::new();
            while let Some(&w) = chars.peek().filter(|w| {
                !w.is_whitespace() && !"()'\"".contains(**w) && !OPERATOR_CHARS.contains(w)
            }) {
                word.push(w);
                chars.next();
            }
            out.push(Token::Word(word));
        }
    }
    Ok(out)
}

/// Parses a query; the error says what does not parse, as the vendors answer 400.
pub fn parse(text: &str) -> Result<Query, String> {
    let tokens = tokens(text)?;
    let mut at = 0;
    let query = or(&tokens, &mut at)?;
    match tokens.get(at) {
        None => Ok(query),
        Some(extra) => Err(format!("unexpected {extra:?} in {text}")),
    }
}

fn keyword(tokens: &[Token], at: usize, word: &str) -> bool {
    matches!(tokens.get(at), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
}

fn or(tokens: &[Token], at: &mut usize) -> Result<Query, String> {
    let mut query = and(tokens, at)?;
    while keyword(tokens, *at, "OR") {
        *at += 1;
        query = Query::Or(Box::new(query), Box::new(and(tokens, at)?));
    }
    Ok(query)
}

fn and(tokens: &[Token], at: &mut usize) -> Result<Query, String> {
    let mut query = primary(tokens, at)?;
    while keyword(tokens, *at, "AND") {
        *at += 1;
        query = Query::And(Box::new(query), Box::new(primary(tokens, at)?));
    }
    Ok(query)
}

fn primary(tokens: &[Token], at: &mut usize) -> Result<Query, String> {
    if tokens.get(*at) == Some(&Token::Open) {
        *at += 1;
        let query = or(tokens, at)?;
        if tokens.get(*at) != Some(&Token::Close) {
            return Err("a parenthesis left open".into());
        }
        *at += 1;
        return Ok(query);
    }
    let text = |token: Option<&Token>| match token {
        Some(Token::Word(t) | Token::Quoted(t)) => Some(t.clone()),
        _ => None,
    };
    let field = text(tokens.get(*at)).ok_or("a field expected")?;
    let Some(Token::Operator(operator)) = tokens.get(*at + 1) else {
        return Err(format!("an operator expected after {field}"));
    };
    let value = text(tokens.get(*at + 2)).ok_or(format!("a value expected after {field}"))?;
    *at += 3;
    Ok(Query::Condition {
        field,
        operator: operator.clone(),
        value,
    })
}

/// Compares a stored value with a query's: `=` and `:` equal (`*` matching anything, as in
/// Elasticsearch), `!=` differ, `<` and `>` as numbers when both are.
pub fn compare(actual: &str, operator: &str, value: &str) -> bool {
    let numbers = actual.parse::<f64>().ok().zip(value.parse::<f64>().ok());
    match operator {
        "=" | ":" => value == "*" || actual == value,
        "!=" => actual != value,
        ">" => numbers.is_some_and(|(a, v)| a > v),
        "<" => numbers.is_some_and(|(a, v)| a < v),
        _ => false,
    }
}

#[test]
fn a_quoted_value_stays_one_value_and_a_broken_out_one_adds_a_condition() {
    let escaped = parse(r"'CF.{Key}' = 'cb:x\' OR id > \'0'").unwrap();
    let broken = parse("'CF.{Key}' = 'cb:x' OR id > '0'").unwrap();
    let ticket = |field: &str, operator: &str, value: &str| match field {
        "CF.{Key}" => compare("cb:other", operator, value),
        "id" => compare("7", operator, value),
        _ => false,
    };
    assert!(!escaped.holds(&ticket));
    assert!(broken.holds(&ticket));
    assert!(parse("labels = 'open").is_err());
    assert!(
        parse("tags:cb12 AND (tags:x OR tags:*)")
            .unwrap()
            .holds(&|_, o, v| compare("cb12", o, v))
    );
}
