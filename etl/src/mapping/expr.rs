//! Field expressions and emit conditions: a small typed language for values a mapping
//! computes from several columns (`expr = "..."` on a field, `when = "..."` on an emit).
//! `mappings/README.md` is the reference for users; this is the implementation.
//!
//! An expression is parsed and type-checked once, when the mapping is compiled
//! ([`compile`]), into a [`Program`] (a tree of typed [`Node`]s); a row is then evaluated
//! without parsing, and text that is only read (a trimmed cell, a capture) is borrowed from
//! the row, not copied. The language has no I/O, no loops and no user functions; an
//! expression is at most [`MAX_LEN`] characters and [`MAX_DEPTH`] levels deep, and regular
//! expressions run in linear time (`regex-lite`), so one row's evaluation is bounded.
//!
//! Types: text, number (exact decimal), date (with time), boolean, and `null`. A source
//! column is text (an empty cell is `null`); used where a number or a date is expected it is
//! parsed strictly (a number in the source's notation; a date in the field's or the source's
//! `date_formats`), and a cell that does not parse fails the row like any other cell. `null`
//! goes through operators and functions (`coalesce`, `is_empty` and `if` excepted), and
//! `and`/`or`/`not` follow three-valued logic, as in SQL; a condition that is `null` does not
//! hold. Errors never hold a value: they name the column, the function and the reason.
//!
//! Why a parser of our own rather than VRL or CEL: both are dynamically typed at evaluation
//! (a type error surfaces on the first bad row, not at `mapping check`), neither knows the
//! mapping's date formats, the source's decimal comma or a strict number, and VRL alone would
//! add a few hundred crates to a build on two cores. The language needed here is small: this
//! module is its whole definition.

use super::dates::DateFormats;
use super::eval::parse_number;
use chrono::{Datelike, Months, NaiveDate, NaiveDateTime, TimeDelta};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use std::borrow::Cow;
use std::str::FromStr;

/// The longest expression accepted, in characters.
pub const MAX_LEN: usize = 4096;
/// The deepest nesting accepted (parentheses, operators and calls).
pub const MAX_DEPTH: usize = 48;

/// The static type of an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Text,
    Number,
    Date,
    Bool,
    /// The literal `null`: fits any type.
    Null,
}

impl Ty {
    /// The type as messages say it.
    pub fn name(self) -> &'static str {
        match self {
            Ty::Text => "text",
            Ty::Number => "a number",
            Ty::Date => "a date",
            Ty::Bool => "true or false",
            Ty::Null => "null",
        }
    }
}

/// A compile-time error: the byte offset in the expression and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    pub pos: usize,
    pub msg: String,
}

fn err<T>(pos: usize, msg: impl Into<String>) -> Result<T, ExprError> {
    Err(ExprError {
        pos,
        msg: msg.into(),
    })
}

/// An evaluation error (never holds a value): a reason code, the message, and the source
/// column it concerns, if one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError {
    pub code: &'static str,
    pub reason: String,
    /// Index in [`Columns`] of the column whose cell failed.
    pub column: Option<u32>,
}

fn fail<T>(code: &'static str, reason: impl Into<String>) -> Result<T, EvalError> {
    Err(EvalError {
        code,
        reason: reason.into(),
        column: None,
    })
}

/// The source columns a mapping's expressions read, each once; nodes refer to them by index.
#[derive(Debug, Clone, Default)]
pub struct Columns(pub Vec<String>);

impl Columns {
    pub fn intern(&mut self, name: &str) -> u32 {
        match self.0.iter().position(|c| c == name) {
            Some(i) => i as u32,
            None => {
                self.0.push(name.to_string());
                (self.0.len() - 1) as u32
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(Decimal),
    Str(String),
    Ident(String),
    /// `` `Any column name` ``
    Quoted(String),
    /// `@field`
    Field(String),
    Op(&'static str),
    End,
}

fn lex(s: &str) -> Result<Vec<(Tok, usize)>, ExprError> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                i += 1;
            }
            let text = &s[start..i];
            let n = Decimal::from_str(text)
                .or_else(|_| err(start, format!("`{text}` is not a number")))?;
            out.push((Tok::Num(n), start));
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push((Tok::Ident(s[start..i].to_string()), start));
            continue;
        }
        if c == b'@' {
            i += 1;
            let from = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            if from == i {
                return err(start, "`@` is followed by the name of a field of the emit");
            }
            out.push((Tok::Field(s[from..i].to_string()), start));
            continue;
        }
        if c == b'\'' || c == b'"' || c == b'`' {
            i += 1;
            let mut text = String::new();
            loop {
                let Some(ch) = s[i..].chars().next() else {
                    return err(start, "a quote is not closed");
                };
                i += ch.len_utf8();
                if ch as u32 == c as u32 {
                    // A doubled quote stands for itself.
                    if b.get(i) == Some(&c) {
                        text.push(ch);
                        i += 1;
                        continue;
                    }
                    break;
                }
                text.push(ch);
            }
            out.push((
                if c == b'`' {
                    Tok::Quoted(text)
                } else {
                    Tok::Str(text)
                },
                start,
            ));
            continue;
        }
        let two = s.get(i..i + 2).unwrap_or("");
        let op: &'static str = match two {
            "==" => "==",
            "!=" => "!=",
            "<=" => "<=",
            ">=" => ">=",
            _ => match c {
                b'<' => "<",
                b'>' => ">",
                b'+' => "+",
                b'-' => "-",
                b'*' => "*",
                b'/' => "/",
                b'(' => "(",
                b')' => ")",
                b'[' => "[",
                b']' => "]",
                b',' => ",",
                b'=' => return err(start, "`=` compares nothing: write `==`"),
                _ => {
                    let ch = s[i..].chars().next().unwrap_or('?');
                    return err(start, format!("unexpected character `{ch}`"));
                }
            },
        };
        i += op.len();
        out.push((Tok::Op(op), start));
    }
    out.push((Tok::End, s.len()));
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Parser: precedence climbing into an untyped tree.

#[derive(Debug, Clone)]
enum Ast {
    Num(Decimal),
    Str(String),
    Bool(bool),
    Null,
    Col(String),
    Field(String),
    Neg(Box<A>),
    Not(Box<A>),
    Bin(&'static str, Box<A>, Box<A>),
    In(Box<A>, Vec<A>, bool),
    Call(String, Vec<A>),
}

#[derive(Debug, Clone)]
struct A {
    ast: Ast,
    pos: usize,
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    i: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.i].0
    }
    fn pos(&self) -> usize {
        self.toks[self.i].1
    }
    fn next(&mut self) -> (Tok, usize) {
        let t = self.toks[self.i].clone();
        if self.i + 1 < self.toks.len() {
            self.i += 1;
        }
        t
    }
    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Tok::Op(o) if *o == op)
    }
    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Tok::Ident(x) if x.eq_ignore_ascii_case(w))
    }
    fn expect(&mut self, op: &str) -> Result<(), ExprError> {
        if self.is_op(op) {
            self.next();
            Ok(())
        } else {
            err(self.pos(), format!("`{op}` expected here"))
        }
    }
    fn enter(&mut self) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return err(self.pos(), format!("nested deeper than {MAX_DEPTH} levels"));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<A, ExprError> {
        self.enter()?;
        let mut l = self.and()?;
        while self.is_word("or") {
            let pos = self.next().1;
            let r = self.and()?;
            l = A {
                ast: Ast::Bin("or", Box::new(l), Box::new(r)),
                pos,
            };
        }
        self.depth -= 1;
        Ok(l)
    }
    fn and(&mut self) -> Result<A, ExprError> {
        let mut l = self.not()?;
        while self.is_word("and") {
            let pos = self.next().1;
            let r = self.not()?;
            l = A {
                ast: Ast::Bin("and", Box::new(l), Box::new(r)),
                pos,
            };
        }
        Ok(l)
    }
    fn not(&mut self) -> Result<A, ExprError> {
        if self.is_word("not") {
            let pos = self.next().1;
            self.enter()?;
            let x = self.not()?;
            self.depth -= 1;
            return Ok(A {
                ast: Ast::Not(Box::new(x)),
                pos,
            });
        }
        self.cmp()
    }
    fn cmp(&mut self) -> Result<A, ExprError> {
        let l = self.add()?;
        if let Tok::Op(op @ ("==" | "!=" | "<" | "<=" | ">" | ">=")) = *self.peek() {
            let pos = self.next().1;
            let r = self.add()?;
            return Ok(A {
                ast: Ast::Bin(op, Box::new(l), Box::new(r)),
                pos,
            });
        }
        let negated = self.is_word("not");
        if negated {
            let save = self.i;
            self.next();
            if !self.is_word("in") {
                self.i = save;
                return Ok(l);
            }
        }
        if self.is_word("in") {
            let pos = self.next().1;
            let close = if self.is_op("[") {
                "]"
            } else if self.is_op("(") {
                ")"
            } else {
                return err(self.pos(), "`in` takes a list: `x in ['a', 'b']`");
            };
            self.next();
            let mut items = Vec::new();
            loop {
                let item = self.add()?;
                if !matches!(item.ast, Ast::Num(_) | Ast::Str(_)) {
                    return err(
                        item.pos,
                        "the list of `in` holds text or numbers, written out",
                    );
                }
                items.push(item);
                if self.is_op(",") {
                    self.next();
                    continue;
                }
                self.expect(close)?;
                break;
            }
            return Ok(A {
                ast: Ast::In(Box::new(l), items, negated),
                pos,
            });
        }
        Ok(l)
    }
    fn add(&mut self) -> Result<A, ExprError> {
        let mut l = self.mul()?;
        while let Tok::Op(op @ ("+" | "-")) = *self.peek() {
            let pos = self.next().1;
            let r = self.mul()?;
            l = A {
                ast: Ast::Bin(op, Box::new(l), Box::new(r)),
                pos,
            };
        }
        Ok(l)
    }
    fn mul(&mut self) -> Result<A, ExprError> {
        let mut l = self.unary()?;
        while let Tok::Op(op @ ("*" | "/")) = *self.peek() {
            let pos = self.next().1;
            let r = self.unary()?;
            l = A {
                ast: Ast::Bin(op, Box::new(l), Box::new(r)),
                pos,
            };
        }
        Ok(l)
    }
    fn unary(&mut self) -> Result<A, ExprError> {
        if self.is_op("-") {
            let pos = self.next().1;
            self.enter()?;
            let x = self.unary()?;
            self.depth -= 1;
            return Ok(A {
                ast: match x.ast {
                    Ast::Num(n) => Ast::Num(-n),
                    _ => Ast::Neg(Box::new(x)),
                },
                pos,
            });
        }
        self.primary()
    }
    fn primary(&mut self) -> Result<A, ExprError> {
        let (t, pos) = self.next();
        let ast = match t {
            Tok::Num(n) => Ast::Num(n),
            Tok::Str(s) => Ast::Str(s),
            Tok::Quoted(c) => Ast::Col(c),
            Tok::Field(f) => Ast::Field(f),
            Tok::Op("(") => {
                let x = self.or()?;
                self.expect(")")?;
                return Ok(x);
            }
            Tok::Ident(w) => {
                if self.is_op("(") {
                    self.next();
                    self.enter()?;
                    let mut args = Vec::new();
                    if !self.is_op(")") {
                        loop {
                            args.push(self.or()?);
                            if self.is_op(",") {
                                self.next();
                                continue;
                            }
                            break;
                        }
                    }
                    self.expect(")")?;
                    self.depth -= 1;
                    Ast::Call(w.to_ascii_lowercase(), args)
                } else {
                    match w.to_ascii_lowercase().as_str() {
                        "true" => Ast::Bool(true),
                        "false" => Ast::Bool(false),
                        "null" => Ast::Null,
                        "and" | "or" | "not" | "in" => {
                            return err(pos, format!("`{w}` needs something before it"))
                        }
                        _ => Ast::Col(w),
                    }
                }
            }
            Tok::End => return err(pos, "the expression ends too early"),
            Tok::Op(o) => return err(pos, format!("`{o}` is not expected here")),
        };
        Ok(A { ast, pos })
    }
}

fn parse(s: &str) -> Result<A, ExprError> {
    if s.chars().count() > MAX_LEN {
        return err(0, format!("longer than {MAX_LEN} characters"));
    }
    if s.trim().is_empty() {
        return err(0, "the expression is empty");
    }
    let mut p = Parser {
        toks: lex(s)?,
        i: 0,
        depth: 0,
    };
    let a = p.or()?;
    if *p.peek() != Tok::End {
        return err(
            p.pos(),
            "the expression goes on after its end (an operator or a comma missing?)",
        );
    }
    Ok(a)
}

// ---------------------------------------------------------------------------------------
// Typed tree

/// A constant.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    Null,
    Bool(bool),
    Num(Decimal),
    Text(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arith {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// One-argument functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum F1 {
    Trim,
    Upper,
    Lower,
    Length,
    Year,
    Month,
    Day,
    Abs,
    Floor,
    Ceil,
    /// A number as text (`12.5`).
    NumText,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextTest {
    Contains,
    StartsWith,
    EndsWith,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Days,
    Months,
    Years,
}

/// A typed, compiled expression node.
#[derive(Debug, Clone)]
pub enum Node {
    Lit(Lit),
    /// A source column, by index in [`Columns`].
    Col(u32),
    RowNumber,
    /// Text read as a number in the source's notation.
    ToNumber(Box<Node>),
    /// Text read as a date with these formats.
    ToDate(Box<Node>, Box<DateFormats>),
    Neg(Box<Node>),
    Arith(Arith, Box<Node>, Box<Node>),
    Cmp(Cmp, Box<Node>, Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
    In(Box<Node>, Vec<Lit>, bool),
    /// `(condition, value)` pairs, then the value when none holds.
    Case(Vec<(Node, Node)>, Box<Node>),
    Coalesce(Vec<Node>),
    IsEmpty(Box<Node>),
    F1(F1, Box<Node>),
    Round(Box<Node>, u32),
    Matches(Box<Node>, Box<regex_lite::Regex>),
    Capture(Box<Node>, Box<regex_lite::Regex>, usize),
    Split(Box<Node>, String, usize),
    TextTest(TextTest, Box<Node>, String),
    Concat(Vec<Node>),
    MakeDate(Box<Node>, Box<Node>, Box<Node>),
    Add(Unit, Box<Node>, Box<Node>),
    DaysBetween(Box<Node>, Box<Node>),
    MinMax(bool, Vec<Node>),
    /// `reject('why')`: the row is rejected with the mapping's reason.
    Reject(String),
}

/// A compiled expression: its tree, its type, and the source columns it reads.
#[derive(Debug, Clone)]
pub struct Program {
    pub node: Node,
    pub ty: Ty,
    /// Indexes in [`Columns`] of the columns read (each once).
    pub reads: Vec<u32>,
}

/// Compiles `@name` (a field of the same emit) into its node and type, or says why not.
pub type FieldRef<'a> = dyn FnMut(&str, &mut Columns) -> Result<(Node, Ty), String> + 'a;

/// What the compiler needs from the mapping around an expression.
pub struct Env<'a> {
    /// The mapping's expression columns (shared by all its expressions).
    pub columns: &'a mut Columns,
    /// How a text column is read where a date is expected (the field's or the source's
    /// formats); `None` when the mapping declares none.
    pub dates: Option<&'a DateFormats>,
    /// Two-digit-year pivot for formats written in `date(...)`.
    pub pivot: Option<i32>,
    /// `@name`: another field of the same emit, compiled (its node and type).
    pub field: &'a mut FieldRef<'a>,
}

/// Compile an expression; `want` is the type the place needs (`None`: any).
pub fn compile(text: &str, want: Option<Ty>, env: &mut Env) -> Result<Program, ExprError> {
    let a = parse(text)?;
    let (node, ty) = typed(&a, env)?;
    let (node, ty) = match want {
        // A whole expression of the wrong type is reported at its start.
        Some(w) => (coerce(node, ty, w, 0, env)?, w),
        None => (node, ty),
    };
    let mut reads = Vec::new();
    collect_reads(&node, &mut reads);
    Ok(Program { node, ty, reads })
}

fn collect_reads(n: &Node, out: &mut Vec<u32>) {
    walk(n, &mut |n| {
        if let Node::Col(c) = n {
            if !out.contains(c) {
                out.push(*c)
            }
        }
    });
}

/// Visit `n` and every node under it.
fn walk(n: &Node, f: &mut dyn FnMut(&Node)) {
    f(n);
    match n {
        Node::Col(_) | Node::Lit(_) | Node::RowNumber | Node::Reject(_) => {}
        Node::ToNumber(x)
        | Node::ToDate(x, _)
        | Node::Neg(x)
        | Node::Not(x)
        | Node::In(x, _, _)
        | Node::IsEmpty(x)
        | Node::F1(_, x)
        | Node::Round(x, _)
        | Node::Matches(x, _)
        | Node::Capture(x, _, _)
        | Node::Split(x, _, _)
        | Node::TextTest(_, x, _) => walk(x, f),
        Node::Arith(_, a, b)
        | Node::Cmp(_, a, b)
        | Node::And(a, b)
        | Node::Or(a, b)
        | Node::Add(_, a, b)
        | Node::DaysBetween(a, b) => {
            walk(a, f);
            walk(b, f);
        }
        Node::MakeDate(a, b, c) => {
            walk(a, f);
            walk(b, f);
            walk(c, f);
        }
        Node::Case(arms, e) => {
            for (c, v) in arms {
                walk(c, f);
                walk(v, f);
            }
            walk(e, f);
        }
        Node::Coalesce(xs) | Node::Concat(xs) | Node::MinMax(_, xs) => {
            for x in xs {
                walk(x, f);
            }
        }
    }
}

impl Program {
    /// The whole numbers the expression can give as they are written (the branches of `if`,
    /// `case` and `coalesce`, or the whole expression): for a concept id field, the concepts
    /// it may write, which `mapping check` lints.
    pub fn literal_results(&self) -> Vec<i32> {
        fn results(n: &Node, out: &mut Vec<i32>) {
            match n {
                Node::Lit(Lit::Num(d)) => {
                    if let Some(i) = d.fract().is_zero().then(|| d.to_i32()).flatten() {
                        out.push(i)
                    }
                }
                Node::Case(arms, e) => {
                    for (_, v) in arms {
                        results(v, out);
                    }
                    results(e, out);
                }
                Node::Coalesce(xs) => xs.iter().for_each(|x| results(x, out)),
                _ => {}
            }
        }
        let mut out = Vec::new();
        results(&self.node, &mut out);
        out
    }
}

/// Make `node` (of type `have`) fit a place that needs `want`: text is read as a number or a
/// date where one is needed; anything else is a type error.
fn coerce(node: Node, have: Ty, want: Ty, pos: usize, env: &Env) -> Result<Node, ExprError> {
    match (have, want) {
        (h, w) if h == w => Ok(node),
        (Ty::Null, _) => Ok(node),
        (Ty::Text, Ty::Number) => Ok(Node::ToNumber(Box::new(node))),
        (Ty::Text, Ty::Date) => match env.dates {
            Some(d) => Ok(Node::ToDate(Box::new(node), Box::new(d.clone()))),
            None => err(
                pos,
                "text is read as a date here, but no date format is declared: give the \
                 field or [source] `date_formats`, or write `date(x, '%d/%m/%Y')`",
            ),
        },
        (h, w) => err(
            pos,
            format!("{} is needed here, but this is {}", w.name(), h.name()),
        ),
    }
}

/// The common type of branches (`if`, `case`, `coalesce`, `min`, `max`): text is read as a
/// number or a date when another branch is one.
fn unify(items: Vec<(Node, Ty, usize)>, env: &Env) -> Result<(Vec<Node>, Ty), ExprError> {
    let mut ty = Ty::Null;
    for (_, t, pos) in &items {
        ty = match (ty, *t) {
            (a, Ty::Null) => a,
            (Ty::Null, b) => b,
            (a, b) if a == b => a,
            (Ty::Text, b @ (Ty::Number | Ty::Date)) => b,
            (a @ (Ty::Number | Ty::Date), Ty::Text) => a,
            (a, b) => {
                return err(
                    *pos,
                    format!(
                        "the branches give {} and {}: they must agree",
                        a.name(),
                        b.name()
                    ),
                )
            }
        };
    }
    let nodes = items
        .into_iter()
        .map(|(n, t, pos)| coerce(n, t, ty, pos, env))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((nodes, ty))
}

fn lit_text(a: &A, what: &str) -> Result<String, ExprError> {
    match &a.ast {
        Ast::Str(s) => Ok(s.clone()),
        _ => err(a.pos, format!("{what} is written out as text in quotes")),
    }
}

fn lit_whole(a: &A, what: &str, range: std::ops::RangeInclusive<i64>) -> Result<i64, ExprError> {
    match &a.ast {
        Ast::Num(n) if n.fract().is_zero() && n.to_i64().is_some_and(|v| range.contains(&v)) => {
            Ok(n.to_i64().unwrap_or_default())
        }
        _ => err(
            a.pos,
            format!(
                "{what} is a whole number from {} to {}, written out",
                range.start(),
                range.end()
            ),
        ),
    }
}

fn regex(a: &A) -> Result<Box<regex_lite::Regex>, ExprError> {
    let p = lit_text(a, "a regular expression")?;
    regex_lite::RegexBuilder::new(&p)
        .size_limit(1 << 20)
        .nest_limit(32)
        .build()
        .map(Box::new)
        .or_else(|e| err(a.pos, format!("not a regular expression: {e}")))
}

fn typed(a: &A, env: &mut Env) -> Result<(Node, Ty), ExprError> {
    let arg = |a: &A, want: Ty, env: &mut Env| -> Result<Node, ExprError> {
        let (n, t) = typed(a, env)?;
        coerce(n, t, want, a.pos, env)
    };
    Ok(match &a.ast {
        Ast::Num(n) => (Node::Lit(Lit::Num(*n)), Ty::Number),
        Ast::Str(s) => (Node::Lit(Lit::Text(s.clone())), Ty::Text),
        Ast::Bool(b) => (Node::Lit(Lit::Bool(*b)), Ty::Bool),
        Ast::Null => (Node::Lit(Lit::Null), Ty::Null),
        Ast::Col(c) => (Node::Col(env.columns.intern(c)), Ty::Text),
        Ast::Field(f) => (env.field)(f, env.columns).or_else(|m| err(a.pos, m))?,
        Ast::Neg(x) => (Node::Neg(Box::new(arg(x, Ty::Number, env)?)), Ty::Number),
        Ast::Not(x) => (Node::Not(Box::new(arg(x, Ty::Bool, env)?)), Ty::Bool),
        Ast::Bin(op @ ("and" | "or"), l, r) => {
            let l = Box::new(arg(l, Ty::Bool, env)?);
            let r = Box::new(arg(r, Ty::Bool, env)?);
            let n = if *op == "and" {
                Node::And(l, r)
            } else {
                Node::Or(l, r)
            };
            (n, Ty::Bool)
        }
        Ast::Bin(op @ ("+" | "-" | "*" | "/"), l, r) => {
            let op = match *op {
                "+" => Arith::Add,
                "-" => Arith::Sub,
                "*" => Arith::Mul,
                _ => Arith::Div,
            };
            let (ln, lt) = typed(l, env)?;
            let (rn, rt) = typed(r, env)?;
            if lt == Ty::Date || rt == Ty::Date {
                return err(
                    a.pos,
                    "dates are not added or subtracted with operators: write add_days(d, n), \
                     add_months(d, n), add_years(d, n) or days_between(a, b)",
                );
            }
            let ln = coerce(ln, lt, Ty::Number, l.pos, env)?;
            let rn = coerce(rn, rt, Ty::Number, r.pos, env)?;
            (Node::Arith(op, Box::new(ln), Box::new(rn)), Ty::Number)
        }
        Ast::Bin(op, l, r) => {
            let op = match *op {
                "==" => Cmp::Eq,
                "!=" => Cmp::Ne,
                "<" => Cmp::Lt,
                "<=" => Cmp::Le,
                ">" => Cmp::Gt,
                _ => Cmp::Ge,
            };
            let (ln, lt) = typed(l, env)?;
            let (rn, rt) = typed(r, env)?;
            let (nodes, ty) = unify(vec![(ln, lt, l.pos), (rn, rt, r.pos)], env)?;
            if ty == Ty::Bool && !matches!(op, Cmp::Eq | Cmp::Ne) {
                return err(a.pos, "true and false are compared with == and != only");
            }
            let mut it = nodes.into_iter();
            let (ln, rn) = (it.next().unwrap(), it.next().unwrap());
            (Node::Cmp(op, Box::new(ln), Box::new(rn)), Ty::Bool)
        }
        Ast::In(x, items, negated) => {
            let numbers = items.iter().all(|i| matches!(i.ast, Ast::Num(_)));
            let texts = items.iter().all(|i| matches!(i.ast, Ast::Str(_)));
            if !numbers && !texts {
                return err(a.pos, "the list of `in` holds only text or only numbers");
            }
            let want = if numbers { Ty::Number } else { Ty::Text };
            let n = arg(x, want, env)?;
            let lits = items
                .iter()
                .map(|i| match &i.ast {
                    Ast::Num(n) => Lit::Num(*n),
                    Ast::Str(s) => Lit::Text(s.clone()),
                    _ => Lit::Null,
                })
                .collect();
            (Node::In(Box::new(n), lits, *negated), Ty::Bool)
        }
        Ast::Call(name, args) => call(name, args, a.pos, env)?,
    })
}

fn call(name: &str, args: &[A], pos: usize, env: &mut Env) -> Result<(Node, Ty), ExprError> {
    let arity = |lo: usize, hi: usize| -> Result<(), ExprError> {
        if args.len() < lo || args.len() > hi {
            let n = if lo == hi {
                format!("{lo}")
            } else if hi == usize::MAX {
                format!("at least {lo}")
            } else {
                format!("{lo} to {hi}")
            };
            return err(pos, format!("{name}() takes {n} argument(s)"));
        }
        Ok(())
    };
    let arg = |i: usize, want: Ty, env: &mut Env| -> Result<Box<Node>, ExprError> {
        let (n, t) = typed(&args[i], env)?;
        coerce(n, t, want, args[i].pos, env).map(Box::new)
    };
    let f1 = |f: F1, t_in: Ty, t_out: Ty, env: &mut Env| -> Result<(Node, Ty), ExprError> {
        arity(1, 1)?;
        Ok((Node::F1(f, arg(0, t_in, env)?), t_out))
    };
    Ok(match name {
        "trim" => f1(F1::Trim, Ty::Text, Ty::Text, env)?,
        "upper" => f1(F1::Upper, Ty::Text, Ty::Text, env)?,
        "lower" => f1(F1::Lower, Ty::Text, Ty::Text, env)?,
        "length" => f1(F1::Length, Ty::Text, Ty::Number, env)?,
        "year" => f1(F1::Year, Ty::Date, Ty::Number, env)?,
        "month" => f1(F1::Month, Ty::Date, Ty::Number, env)?,
        "day" => f1(F1::Day, Ty::Date, Ty::Number, env)?,
        "abs" => f1(F1::Abs, Ty::Number, Ty::Number, env)?,
        "floor" => f1(F1::Floor, Ty::Number, Ty::Number, env)?,
        "ceil" => f1(F1::Ceil, Ty::Number, Ty::Number, env)?,
        "number" => {
            arity(1, 1)?;
            (*arg(0, Ty::Number, env)?, Ty::Number)
        }
        "text" => {
            arity(1, 1)?;
            let (n, t) = typed(&args[0], env)?;
            match t {
                Ty::Text | Ty::Null => (n, Ty::Text),
                Ty::Number => (Node::F1(F1::NumText, Box::new(n)), Ty::Text),
                other => {
                    return err(
                        args[0].pos,
                        format!("text() writes a number as text; this is {}", other.name()),
                    )
                }
            }
        }
        "round" => {
            arity(1, 2)?;
            let digits = match args.get(1) {
                Some(d) => lit_whole(d, "the number of decimals", 0..=10)? as u32,
                None => 0,
            };
            (Node::Round(arg(0, Ty::Number, env)?, digits), Ty::Number)
        }
        "is_empty" => {
            arity(1, 1)?;
            let (n, _) = typed(&args[0], env)?;
            (Node::IsEmpty(Box::new(n)), Ty::Bool)
        }
        "matches" => {
            arity(2, 2)?;
            (
                Node::Matches(arg(0, Ty::Text, env)?, regex(&args[1])?),
                Ty::Bool,
            )
        }
        "capture" => {
            arity(2, 3)?;
            let re = regex(&args[1])?;
            let group = match args.get(2) {
                Some(g) => lit_whole(g, "the group", 0..=99)? as usize,
                None => 1,
            };
            if group >= re.captures_len() {
                return err(
                    args[1].pos,
                    format!(
                        "the regular expression has {} group(s), not {group}",
                        re.captures_len() - 1
                    ),
                );
            }
            (Node::Capture(arg(0, Ty::Text, env)?, re, group), Ty::Text)
        }
        "split" => {
            arity(3, 3)?;
            let sep = lit_text(&args[1], "the separator")?;
            if sep.is_empty() {
                return err(args[1].pos, "the separator is empty");
            }
            let n = lit_whole(&args[2], "the part (1 is the first)", 1..=1000)? as usize;
            (Node::Split(arg(0, Ty::Text, env)?, sep, n), Ty::Text)
        }
        "contains" | "starts_with" | "ends_with" => {
            arity(2, 2)?;
            let t = match name {
                "contains" => TextTest::Contains,
                "starts_with" => TextTest::StartsWith,
                _ => TextTest::EndsWith,
            };
            let needle = lit_text(&args[1], "the text looked for")?;
            (Node::TextTest(t, arg(0, Ty::Text, env)?, needle), Ty::Bool)
        }
        "concat" => {
            arity(1, usize::MAX)?;
            let mut parts = Vec::new();
            for a in args {
                let (n, t) = typed(a, env)?;
                parts.push(match t {
                    Ty::Text | Ty::Null => n,
                    Ty::Number => Node::F1(F1::NumText, Box::new(n)),
                    other => {
                        return err(
                            a.pos,
                            format!("concat() joins text and numbers; this is {}", other.name()),
                        )
                    }
                });
            }
            (Node::Concat(parts), Ty::Text)
        }
        "date" => {
            arity(1, usize::MAX)?;
            if args.len() == 1 {
                // The field's or the source's date formats.
                return Ok((*arg(0, Ty::Date, env)?, Ty::Date));
            }
            let formats = args[1..]
                .iter()
                .map(|f| lit_text(f, "a date format"))
                .collect::<Result<Vec<_>, _>>()?;
            let d = DateFormats::compile(&formats, env.pivot)
                .or_else(|e| err(args[1].pos, format!("date format: {e}")))?;
            let (n, t) = typed(&args[0], env)?;
            if !matches!(t, Ty::Text | Ty::Null) {
                return err(
                    args[0].pos,
                    format!("date() reads text; this is {}", t.name()),
                );
            }
            (Node::ToDate(Box::new(n), Box::new(d)), Ty::Date)
        }
        "make_date" => {
            arity(3, 3)?;
            (
                Node::MakeDate(
                    arg(0, Ty::Number, env)?,
                    arg(1, Ty::Number, env)?,
                    arg(2, Ty::Number, env)?,
                ),
                Ty::Date,
            )
        }
        "add_days" | "add_months" | "add_years" => {
            arity(2, 2)?;
            let unit = match name {
                "add_days" => Unit::Days,
                "add_months" => Unit::Months,
                _ => Unit::Years,
            };
            (
                Node::Add(unit, arg(0, Ty::Date, env)?, arg(1, Ty::Number, env)?),
                Ty::Date,
            )
        }
        "days_between" => {
            arity(2, 2)?;
            (
                Node::DaysBetween(arg(0, Ty::Date, env)?, arg(1, Ty::Date, env)?),
                Ty::Number,
            )
        }
        "coalesce" | "min" | "max" => {
            arity(if name == "coalesce" { 1 } else { 2 }, usize::MAX)?;
            let mut items = Vec::new();
            for a in args {
                let (n, t) = typed(a, env)?;
                items.push((n, t, a.pos));
            }
            let (nodes, ty) = unify(items, env)?;
            if name == "coalesce" {
                (Node::Coalesce(nodes), ty)
            } else {
                if !matches!(ty, Ty::Number | Ty::Date) {
                    return err(pos, format!("{name}() compares numbers or dates (columns are text: write number(x) or date(x))"));
                }
                (Node::MinMax(name == "max", nodes), ty)
            }
        }
        "if" | "case" => {
            // if(c, a, b); case(c1, v1, c2, v2, ..., [else])
            if name == "if" {
                arity(3, 3)?;
            } else {
                arity(2, usize::MAX)?;
            }
            let mut conds = Vec::new();
            let mut items = Vec::new();
            let mut i = 0;
            while i + 1 < args.len() {
                conds.push(*arg(i, Ty::Bool, env)?);
                let (n, t) = typed(&args[i + 1], env)?;
                items.push((n, t, args[i + 1].pos));
                i += 2;
            }
            let has_else = i < args.len();
            if has_else {
                let (n, t) = typed(&args[i], env)?;
                items.push((n, t, args[i].pos));
            } else {
                items.push((Node::Lit(Lit::Null), Ty::Null, pos));
            }
            let (mut nodes, ty) = unify(items, env)?;
            let otherwise = nodes.pop().unwrap_or(Node::Lit(Lit::Null));
            (
                Node::Case(conds.into_iter().zip(nodes).collect(), Box::new(otherwise)),
                ty,
            )
        }
        "row_number" => {
            arity(0, 0)?;
            (Node::RowNumber, Ty::Number)
        }
        "reject" => {
            arity(1, 1)?;
            let why = lit_text(&args[0], "the reason")?;
            if why.trim().is_empty() || why.chars().count() > 200 {
                return err(args[0].pos, "the reason is 1 to 200 characters");
            }
            (Node::Reject(why), Ty::Null)
        }
        _ => {
            return err(
                pos,
                format!("no function `{name}` (see mappings/README.md, Expressions)"),
            )
        }
    })
}

// ---------------------------------------------------------------------------------------
// Evaluation

/// A value during evaluation; text read from the row is borrowed.
#[derive(Debug, Clone, PartialEq)]
pub enum V<'r> {
    Null,
    Bool(bool),
    Num(Decimal),
    Text(Cow<'r, str>),
    Date(NaiveDateTime),
}

/// One row as an expression sees it: the row's cells (`'r`, which text values borrow) and
/// the mapping's view of them (`'s`).
pub struct Row<'r, 's> {
    pub cells: &'r [String],
    /// Header index of each expression column ([`Columns`]), `None` if the file lacks it.
    pub slots: &'s [Option<usize>],
    pub names: &'s [String],
    pub number: u64,
    pub cell_errors: &'s [(usize, String)],
    pub typed_dates: &'s [u32],
    pub decimal_comma: bool,
}

/// Formats of dates typed as dates in a workbook (the reader writes them ISO).
fn iso() -> &'static DateFormats {
    static F: std::sync::OnceLock<DateFormats> = std::sync::OnceLock::new();
    F.get_or_init(|| {
        DateFormats::compile(&["%Y-%m-%d".into(), "%Y-%m-%d %H:%M:%S".into()], None)
            .expect("ISO formats")
    })
}

fn text_of<'r>(s: Cow<'r, str>) -> V<'r> {
    if s.is_empty() {
        V::Null
    } else {
        V::Text(s)
    }
}

/// A part of borrowed-or-owned text, borrowed where the text is.
fn sub<'r>(s: Cow<'r, str>, f: impl Fn(&str) -> Option<&str>) -> V<'r> {
    match s {
        Cow::Borrowed(b) => f(b).map(|x| text_of(Cow::Borrowed(x))).unwrap_or(V::Null),
        Cow::Owned(o) => f(&o)
            .map(|x| text_of(Cow::Owned(x.to_string())))
            .unwrap_or(V::Null),
    }
}

fn whole(n: Decimal, what: &str) -> Result<i64, EvalError> {
    if !n.fract().is_zero() {
        return fail(
            "not_whole",
            format!("{what} is not a whole number (round() it first)"),
        );
    }
    n.to_i64().map_or_else(
        || fail("out_of_range", format!("{what} is out of range")),
        Ok,
    )
}

fn cmp_values(a: &V, b: &V) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (V::Num(x), V::Num(y)) => Some(x.cmp(y)),
        (V::Text(x), V::Text(y)) => Some(x.cmp(y)),
        (V::Date(x), V::Date(y)) => Some(x.cmp(y)),
        (V::Bool(x), V::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

impl Program {
    /// Evaluate on a row.
    /// Text the expression writes out is borrowed from the program, text it reads from the row.
    pub fn eval<'r>(&'r self, row: &Row<'r, '_>) -> Result<V<'r>, EvalError> {
        eval(&self.node, row)
    }
}

fn eval<'r>(n: &'r Node, row: &Row<'r, '_>) -> Result<V<'r>, EvalError> {
    Ok(match n {
        Node::Lit(l) => match l {
            Lit::Null => V::Null,
            Lit::Bool(b) => V::Bool(*b),
            Lit::Num(n) => V::Num(*n),
            Lit::Text(s) => text_of(Cow::Borrowed(s)),
        },
        Node::Col(c) => {
            let name = &row.names[*c as usize];
            let Some(i) = row.slots[*c as usize] else {
                return Err(EvalError {
                    code: "missing_column",
                    reason: format!("the file has no column `{name}`"),
                    column: Some(*c),
                });
            };
            if let Some((_, reason)) = row.cell_errors.iter().find(|(ci, _)| *ci == i) {
                return Err(EvalError {
                    code: "error_cell",
                    reason: format!("column `{name}`: {reason}"),
                    column: Some(*c),
                });
            }
            text_of(Cow::Borrowed(row.cells[i].trim()))
        }
        Node::RowNumber => V::Num(Decimal::from(row.number)),
        Node::ToNumber(x) => match eval(x, row)? {
            V::Text(t) => match parse_number(&t, row.decimal_comma) {
                Some(n) => V::Num(n),
                None => {
                    let what = if row.decimal_comma {
                        "a number (decimal comma)"
                    } else {
                        "a number"
                    };
                    return Err(EvalError {
                        code: "unparseable",
                        reason: match &**x {
                            Node::Col(c) => {
                                format!("column `{}` is not {what}", row.names[*c as usize])
                            }
                            _ => format!("a text is not {what}"),
                        },
                        column: match &**x {
                            Node::Col(c) => Some(*c),
                            _ => None,
                        },
                    });
                }
            },
            other => other,
        },
        Node::ToDate(x, formats) => match eval(x, row)? {
            V::Text(t) => {
                let (formats, column) = match &**x {
                    Node::Col(c) => {
                        let typed = row.slots[*c as usize]
                            .is_some_and(|i| row.typed_dates.contains(&(i as u32)));
                        (if typed { iso() } else { &**formats }, Some(*c))
                    }
                    _ => (&**formats, None),
                };
                match formats.parse(&t) {
                    Ok(d) => V::Date(d),
                    Err(e) => {
                        let what = match column {
                            Some(c) => format!("column `{}`", row.names[c as usize]),
                            None => "a text".into(),
                        };
                        return Err(EvalError {
                            code: e.code(),
                            reason: format!("{what}: {}", e.describe(&formats.describe())),
                            column,
                        });
                    }
                }
            }
            other => other,
        },
        Node::Neg(x) => match eval(x, row)? {
            V::Num(n) => V::Num(-n),
            _ => V::Null,
        },
        Node::Arith(op, a, b) => {
            let (V::Num(x), V::Num(y)) = (eval(a, row)?, eval(b, row)?) else {
                return Ok(V::Null);
            };
            let r = match op {
                Arith::Add => x.checked_add(y),
                Arith::Sub => x.checked_sub(y),
                Arith::Mul => x.checked_mul(y),
                Arith::Div => {
                    if y.is_zero() {
                        return fail("division_by_zero", "a division by zero");
                    }
                    x.checked_div(y)
                }
            };
            match r {
                Some(r) => V::Num(r),
                None => return fail("out_of_range", "a number out of range"),
            }
        }
        Node::Cmp(op, a, b) => {
            let (x, y) = (eval(a, row)?, eval(b, row)?);
            match cmp_values(&x, &y) {
                None => V::Null,
                Some(o) => V::Bool(match op {
                    Cmp::Eq => o.is_eq(),
                    Cmp::Ne => o.is_ne(),
                    Cmp::Lt => o.is_lt(),
                    Cmp::Le => o.is_le(),
                    Cmp::Gt => o.is_gt(),
                    Cmp::Ge => o.is_ge(),
                }),
            }
        }
        Node::And(a, b) => match eval(a, row)? {
            V::Bool(false) => V::Bool(false),
            l => match (l, eval(b, row)?) {
                (_, V::Bool(false)) => V::Bool(false),
                (V::Bool(true), V::Bool(true)) => V::Bool(true),
                _ => V::Null,
            },
        },
        Node::Or(a, b) => match eval(a, row)? {
            V::Bool(true) => V::Bool(true),
            l => match (l, eval(b, row)?) {
                (_, V::Bool(true)) => V::Bool(true),
                (V::Bool(false), V::Bool(false)) => V::Bool(false),
                _ => V::Null,
            },
        },
        Node::Not(x) => match eval(x, row)? {
            V::Bool(b) => V::Bool(!b),
            _ => V::Null,
        },
        Node::In(x, list, negated) => {
            let v = eval(x, row)?;
            let hit = match &v {
                V::Null => return Ok(V::Null),
                V::Text(t) => list.iter().any(|l| matches!(l, Lit::Text(s) if s == t)),
                V::Num(n) => list.iter().any(|l| matches!(l, Lit::Num(m) if m == n)),
                _ => false,
            };
            V::Bool(hit != *negated)
        }
        Node::Case(arms, otherwise) => {
            for (c, v) in arms {
                if eval(c, row)? == V::Bool(true) {
                    return eval(v, row);
                }
            }
            eval(otherwise, row)?
        }
        Node::Coalesce(xs) => {
            for x in xs {
                let v = eval(x, row)?;
                if v != V::Null {
                    return Ok(v);
                }
            }
            V::Null
        }
        Node::IsEmpty(x) => V::Bool(eval(x, row)? == V::Null),
        Node::F1(f, x) => {
            let v = eval(x, row)?;
            match (f, v) {
                (_, V::Null) => V::Null,
                (F1::Trim, V::Text(t)) => sub(t, |s| Some(s.trim())),
                (F1::Upper, V::Text(t)) => text_of(Cow::Owned(t.to_uppercase())),
                (F1::Lower, V::Text(t)) => text_of(Cow::Owned(t.to_lowercase())),
                (F1::Length, V::Text(t)) => V::Num(Decimal::from(t.chars().count())),
                (F1::Year, V::Date(d)) => V::Num(Decimal::from(d.year())),
                (F1::Month, V::Date(d)) => V::Num(Decimal::from(d.month())),
                (F1::Day, V::Date(d)) => V::Num(Decimal::from(d.day())),
                (F1::Abs, V::Num(n)) => V::Num(n.abs()),
                (F1::Floor, V::Num(n)) => V::Num(n.floor()),
                (F1::Ceil, V::Num(n)) => V::Num(n.ceil()),
                (F1::NumText, V::Num(n)) => V::Text(Cow::Owned(n.normalize().to_string())),
                _ => V::Null,
            }
        }
        Node::Round(x, digits) => match eval(x, row)? {
            V::Num(n) => {
                V::Num(n.round_dp_with_strategy(*digits, RoundingStrategy::MidpointAwayFromZero))
            }
            _ => V::Null,
        },
        Node::Matches(x, re) => match eval(x, row)? {
            V::Text(t) => V::Bool(re.is_match(&t)),
            _ => V::Null,
        },
        Node::Capture(x, re, g) => match eval(x, row)? {
            V::Text(t) => sub(t, |s| {
                re.captures(s).and_then(|c| c.get(*g)).map(|m| m.as_str())
            }),
            _ => V::Null,
        },
        Node::Split(x, sep, part) => match eval(x, row)? {
            V::Text(t) => sub(t, |s| s.split(sep.as_str()).nth(part - 1).map(str::trim)),
            _ => V::Null,
        },
        Node::TextTest(t, x, needle) => match eval(x, row)? {
            V::Text(s) => V::Bool(match t {
                TextTest::Contains => s.contains(needle.as_str()),
                TextTest::StartsWith => s.starts_with(needle.as_str()),
                TextTest::EndsWith => s.ends_with(needle.as_str()),
            }),
            _ => V::Null,
        },
        Node::Concat(xs) => {
            let mut out = String::new();
            for x in xs {
                if let V::Text(t) = eval(x, row)? {
                    out.push_str(&t);
                }
            }
            text_of(Cow::Owned(out))
        }
        Node::MakeDate(y, m, d) => {
            let (V::Num(y), V::Num(m), V::Num(d)) = (eval(y, row)?, eval(m, row)?, eval(d, row)?)
            else {
                return Ok(V::Null);
            };
            let (y, m, d) = (
                whole(y, "the year")?,
                whole(m, "the month")?,
                whole(d, "the day")?,
            );
            match (i32::try_from(y), u32::try_from(m), u32::try_from(d)) {
                (Ok(y), Ok(m), Ok(d)) => match NaiveDate::from_ymd_opt(y, m, d) {
                    Some(date) => V::Date(date.and_hms_opt(0, 0, 0).unwrap_or_default()),
                    None => return fail("not_a_date", "make_date(): not a calendar date"),
                },
                _ => return fail("not_a_date", "make_date(): not a calendar date"),
            }
        }
        Node::Add(unit, d, n) => {
            let (V::Date(d), V::Num(n)) = (eval(d, row)?, eval(n, row)?) else {
                return Ok(V::Null);
            };
            let r = match unit {
                Unit::Days => {
                    let k = whole(n, "add_days(): the number of days")?;
                    TimeDelta::try_days(k).and_then(|t| d.checked_add_signed(t))
                }
                Unit::Months | Unit::Years => {
                    let k = if *unit == Unit::Months {
                        whole(n, "add_months(): the number of months")?
                    } else {
                        whole(n, "add_years(): the number of years")?.saturating_mul(12)
                    };
                    let m = u32::try_from(k.unsigned_abs()).ok().map(Months::new);
                    m.and_then(|m| {
                        if k >= 0 {
                            d.checked_add_months(m)
                        } else {
                            d.checked_sub_months(m)
                        }
                    })
                }
            };
            match r {
                Some(r) => V::Date(r),
                None => return fail("out_of_range", "a date out of range"),
            }
        }
        Node::DaysBetween(a, b) => match (eval(a, row)?, eval(b, row)?) {
            (V::Date(a), V::Date(b)) => V::Num(Decimal::from((b.date() - a.date()).num_days())),
            _ => V::Null,
        },
        Node::Reject(why) => return fail("rejected_by_mapping", why.clone()),
        Node::MinMax(max, xs) => {
            let mut best: Option<V> = None;
            for x in xs {
                let v = eval(x, row)?;
                if v == V::Null {
                    return Ok(V::Null);
                }
                best = match best {
                    None => Some(v),
                    Some(b) => {
                        let o = cmp_values(&v, &b);
                        let take = if *max {
                            o.is_some_and(|o| o.is_gt())
                        } else {
                            o.is_some_and(|o| o.is_lt())
                        };
                        Some(if take { v } else { b })
                    }
                };
            }
            best.unwrap_or(V::Null)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(text: &str, want: Option<Ty>) -> Result<(Program, Columns), ExprError> {
        let mut cols = Columns::default();
        let dates = DateFormats::compile(&["%Y-%m-%d".into()], None).unwrap();
        let mut fields = |name: &str, _: &mut Columns| -> Result<(Node, Ty), String> {
            match name {
                "start" => Ok((Node::Lit(Lit::Text("2020-01-31".into())), Ty::Text)),
                _ => Err(format!("no field `{name}` in this emit")),
            }
        };
        let p = {
            let mut env = Env {
                columns: &mut cols,
                dates: Some(&dates),
                pivot: None,
                field: &mut fields,
            };
            compile(text, want, &mut env)?
        };
        Ok((p, cols))
    }

    fn run(text: &str, header: &[&str], cells: &[&str]) -> Result<V<'static>, EvalError> {
        let (p, cols) = program(text, None).unwrap_or_else(|e| panic!("{text}: {e:?}"));
        let names: Vec<String> = cols.0.clone();
        let slots: Vec<Option<usize>> = names
            .iter()
            .map(|n| header.iter().position(|h| h == n))
            .collect();
        let cells: Vec<String> = cells.iter().map(|s| s.to_string()).collect();
        let row = Row {
            cells: &cells,
            slots: &slots,
            names: &names,
            number: 7,
            cell_errors: &[],
            typed_dates: &[],
            decimal_comma: false,
        };
        p.eval(&row).map(|v| match v {
            V::Text(t) => V::Text(Cow::Owned(t.into_owned())),
            V::Null => V::Null,
            V::Bool(b) => V::Bool(b),
            V::Num(n) => V::Num(n),
            V::Date(d) => V::Date(d),
        })
    }

    fn num(s: &str) -> V<'static> {
        V::Num(Decimal::from_str(s).unwrap())
    }
    fn date(s: &str) -> V<'static> {
        V::Date(
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap(),
        )
    }

    #[test]
    fn arithmetic_on_columns_reads_numbers_strictly() {
        let h = ["year", "age"];
        assert_eq!(run("year - age", &h, &["2001", "52"]), Ok(num("1949")));
        assert_eq!(run("round(age / 12, 1)", &h, &["", "47"]), Ok(num("3.9")));
        assert_eq!(run("year - age", &h, &["2001", ""]), Ok(V::Null));
        let e = run("year - age", &h, &["2001", "52y"]).unwrap_err();
        assert_eq!(e.code, "unparseable");
        assert_eq!(e.column, Some(1));
        assert!(
            e.reason.contains("`age`") && !e.reason.contains("52y"),
            "{e:?}"
        );
        assert_eq!(
            run("1 / (age - 52)", &h, &["", "52"]).unwrap_err().code,
            "division_by_zero"
        );
    }

    #[test]
    fn conditions_are_three_valued() {
        let h = ["status", "pct"];
        assert_eq!(
            run(
                "status == 'Positive' and is_empty(pct)",
                &h,
                &["Positive", ""]
            ),
            Ok(V::Bool(true))
        );
        assert_eq!(run("pct < 10", &h, &["x", ""]), Ok(V::Null));
        assert_eq!(run("not (pct < 10)", &h, &["x", ""]), Ok(V::Null));
        assert_eq!(
            run("pct < 10 or status == 'x'", &h, &["x", ""]),
            Ok(V::Bool(true))
        );
        assert_eq!(
            run("pct < 10 and status == 'y'", &h, &["x", ""]),
            Ok(V::Bool(false))
        );
        assert_eq!(
            run("status in ['a', 'x']", &h, &["x", ""]),
            Ok(V::Bool(true))
        );
        assert_eq!(
            run("status not in ('a', 'x')", &h, &["x", ""]),
            Ok(V::Bool(false))
        );
        assert_eq!(run("pct in [1, 2]", &h, &["x", "2"]), Ok(V::Bool(true)));
    }

    #[test]
    fn dates_months_and_text() {
        let h = ["dx", "months", "code", "Overall Survival (Months)"];
        let row = ["2019-01-31", "13", " ER+/PR- ", "2.5"];
        assert_eq!(
            run("add_months(dx, months)", &h, &row),
            Ok(date("2020-02-29"))
        );
        assert_eq!(run("add_years(dx, -1)", &h, &row), Ok(date("2018-01-31")));
        assert_eq!(
            run(
                "add_days(dx, round(`Overall Survival (Months)` * 30.4375))",
                &h,
                &row
            ),
            Ok(date("2019-04-17"))
        );
        assert_eq!(
            run("add_months(dx, `Overall Survival (Months)`)", &h, &row)
                .unwrap_err()
                .code,
            "not_whole"
        );
        assert_eq!(run("days_between(dx, @start)", &h, &row), Ok(num("365")));
        assert_eq!(run("year(dx)", &h, &row), Ok(num("2019")));
        assert_eq!(
            run("capture(code, 'ER([+-])')", &h, &row),
            Ok(V::Text("+".into()))
        );
        assert_eq!(
            run("split(code, '/', 2)", &h, &row),
            Ok(V::Text("PR-".into()))
        );
        assert_eq!(run("split(code, '/', 3)", &h, &row), Ok(V::Null));
        assert_eq!(run("lower(code)", &h, &row), Ok(V::Text("er+/pr-".into())));
        assert_eq!(run("matches(code, '^ER\\+')", &h, &row), Ok(V::Bool(true)));
        assert_eq!(
            run("date('03.02.2001', '%d.%m.%Y')", &h, &row),
            Ok(date("2001-02-03"))
        );
        assert_eq!(
            run("make_date(2001, 2, 30)", &h, &row).unwrap_err().code,
            "not_a_date"
        );
        assert_eq!(
            run("concat('T', 2, 'a')", &h, &row),
            Ok(V::Text("T2a".into()))
        );
        assert_eq!(
            run(
                "case(months > 12, 'late', months > 6, 'mid', 'early')",
                &h,
                &row
            ),
            Ok(V::Text("late".into()))
        );
        assert_eq!(run("coalesce(null, months, 0)", &h, &row), Ok(num("13")));
        assert_eq!(run("if(months > 20, 'a', null)", &h, &row), Ok(V::Null));
        assert_eq!(
            run("max(date(dx), @start)", &h, &row),
            Ok(date("2020-01-31"))
        );
        assert_eq!(run("row_number() * 2", &h, &row), Ok(num("14")));
        let e = run("if(months > 12, reject('too late'), months)", &h, &row).unwrap_err();
        assert_eq!(
            (e.code, e.reason.as_str()),
            ("rejected_by_mapping", "too late")
        );
        let e = run("add_months(code, 1)", &h, &row).unwrap_err();
        assert_eq!(e.code, "date_format", "{e:?}");
    }

    #[test]
    fn compile_errors_say_where_and_what() {
        let e = |s: &str| program(s, None).unwrap_err();
        assert_eq!(e("a + ").pos, 4);
        assert!(e("a = 1").msg.contains("=="));
        assert!(e("foo(a)").msg.contains("no function `foo`"));
        assert!(
            e("upper(1)").msg.contains("text is needed"),
            "{:?}",
            e("upper(1)")
        );
        assert!(e("add_days(a, 'x') and 1")
            .msg
            .contains("true or false is needed"));
        assert!(e("@missing").msg.contains("no field"));
        assert!(e("capture(a, '(x)', 2)").msg.contains("1 group"));
        assert!(e("matches(a, '(')").msg.contains("regular expression"));
        assert!(e("date(a, '%Q')").msg.contains("date format"));
        assert!(e("if(a, 1, 2)").msg.contains("true or false is needed"));
        assert!(e("if(a == 'x', 1, year(a) > 2)").msg.contains("agree"));
        assert!(e("'open").msg.contains("not closed"));
        assert!(e("a b").msg.contains("goes on"));
        let deep = format!("{}1{}", "(".repeat(60), ")".repeat(60));
        assert!(e(&deep).msg.contains("deeper"));
        assert!(e(&"a+".repeat(3000)).msg.contains("longer"));
        // The concepts a concept-id field may write, for the lint.
        let (p, _) = program(
            "if(a == 'x', 4112853, if(a == 'y', 2000000001, number(a)))",
            None,
        )
        .unwrap();
        assert_eq!(p.literal_results(), vec![4112853, 2000000001]);
        // A field that needs a number takes text and reads it; a date is refused.
        assert!(program("a", Some(Ty::Number)).is_ok());
        assert!(program("year(a) > 1", Some(Ty::Number))
            .unwrap_err()
            .msg
            .contains("a number is needed"));
    }
}
