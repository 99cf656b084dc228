//! String interning: label keys and values become small integers, so requirement sets compare and
//! intersect without hashing strings in the hot loops.

use std::collections::HashMap;

/// An interned string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sym(pub u32);

/// Maps strings to [`Sym`]s and back. One interner serves one solve.
#[derive(Debug, Default, Clone)]
pub struct Interner {
    ids: HashMap<Box<str>, Sym>,
    names: Vec<Box<str>>,
    /// The integer each string parses as, for `Gt`/`Lt` comparisons.
    numbers: Vec<Option<i64>>,
}

impl Interner {
    pub fn new() -> Self {
        Self::default()
    }

    /// The symbol for `text`, creating it on first use.
    pub fn intern(&mut self, text: &str) -> Sym {
        if let Some(sym) = self.ids.get(text) {
            return *sym;
        }
        // More than u32::MAX distinct strings cannot fit in memory alongside the problem.
        let sym = Sym(u32::try_from(self.names.len()).unwrap_or(u32::MAX));
        self.names.push(text.into());
        self.numbers.push(text.parse().ok());
        self.ids.insert(text.into(), sym);
        sym
    }

    /// The symbol for `text` if it was interned.
    pub fn get(&self, text: &str) -> Option<Sym> {
        self.ids.get(text).copied()
    }

    /// The integer value of a symbol, if its text is an integer.
    pub fn number(&self, sym: Sym) -> Option<i64> {
        self.numbers.get(sym.0 as usize).copied().flatten()
    }

    /// The text of a symbol.
    pub fn resolve(&self, sym: Sym) -> &str {
        self.names.get(sym.0 as usize).map_or("", |s| s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_is_stable() {
        let mut interner = Interner::new();
        let a = interner.intern("kubernetes.io/arch");
        let b = interner.intern("amd64");
        assert_ne!(a, b);
        assert_eq!(interner.intern("kubernetes.io/arch"), a);
        assert_eq!(interner.resolve(b), "amd64");
        assert_eq!(interner.get("missing"), None);
    }
}
