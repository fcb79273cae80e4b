//! Distinguished names compared as what they are, a sequence of RDNs of typed values, not as
//! printed text: `CN=alice\, O=Agency A` (one RDN whose common name holds a comma) is not
//! `CN=alice, O=Agency A` (two RDNs). Certificate subjects and the subjects administrators map
//! are both turned into one canonical string (RFC 4514 escaping, upper-case attribute types,
//! `, ` between RDNs and `+` inside one, in the order given) and compared exactly.

/// A subject an administrator wrote that is not a distinguished name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a distinguished name ({0}); write it as CN=alice, OU=Analysis, O=Agency with \\, for a comma inside a value")]
pub struct DnError(&'static str);

/// The canonical string of a name given as RDNs, each a list of (attribute type, value).
pub fn canonical_dn<'a, R, A>(rdns: R) -> String
where
    R: IntoIterator<Item = A>,
    A: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut out = String::new();
    for (i, rdn) in rdns.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        for (j, (ty, value)) in rdn.into_iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            out.push_str(&ty.trim().to_ascii_uppercase());
            out.push('=');
            escape(value, &mut out);
        }
    }
    out
}

fn escape(value: &str, out: &mut String) {
    let n = value.chars().count();
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (i == 0 && (c == '#' || c == ' '))
            || (i + 1 == n && c == ' ');
        if special {
            out.push('\\');
            out.push(c);
        } else if c.is_control() {
            for b in c.to_string().bytes() {
                out.push_str(&format!("\\{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
}

/// Parses a distinguished name as written (RFC 4514 escapes: `\,` and `\2C` alike), and
/// returns its canonical string.
pub fn parse_dn(text: &str) -> Result<String, DnError> {
    let mut rdns: Vec<Vec<(String, String)>> = vec![Vec::new()];
    let mut attr = Attr::default();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if !attr.in_value {
            match c {
                '=' => attr.in_value = true,
                ',' | '+' | '\\' => return Err(DnError("an attribute without '='")),
                c => attr.ty.push(c),
            }
            continue;
        }
        match c {
            '\\' => {
                let next = chars.next().ok_or(DnError("a trailing backslash"))?;
                if next.is_ascii_hexdigit() {
                    let lo = chars
                        .next()
                        .filter(char::is_ascii_hexdigit)
                        .ok_or(DnError("a \\X escape needs two hex digits"))?;
                    let byte = u8::from_str_radix(&format!("{next}{lo}"), 16)
                        .map_err(|_| DnError("a bad \\XX escape"))?;
                    attr.bytes.push(byte);
                } else {
                    attr.push(next, true)?;
                }
            }
            ',' | '+' => {
                rdns.last_mut().map_or(Ok(()), |r| attr.finish(r))?;
                if c == ',' {
                    rdns.push(Vec::new());
                }
            }
            c => attr.push(c, false)?,
        }
    }
    if !attr.in_value {
        return Err(DnError("an attribute without '='"));
    }
    rdns.last_mut().map_or(Ok(()), |r| attr.finish(r))?;
    if rdns.iter().any(Vec::is_empty) {
        return Err(DnError("an empty RDN"));
    }
    Ok(canonical_dn(
        rdns.iter()
            .map(|r| r.iter().map(|(t, v)| (t.as_str(), v.as_str()))),
    ))
}

/// One attribute being read.
#[derive(Default)]
struct Attr {
    ty: String,
    value: String,
    in_value: bool,
    /// Bytes of `\XX` escapes not yet decoded (a character may take several).
    bytes: Vec<u8>,
    /// Unescaped spaces at the end of `value` so far (not part of the value).
    trailing: usize,
}

impl Attr {
    fn decode(&mut self) -> Result<(), DnError> {
        if !self.bytes.is_empty() {
            let s = std::str::from_utf8(&self.bytes)
                .map_err(|_| DnError("a \\XX escape that is not UTF-8"))?;
            self.value.push_str(s);
            self.bytes.clear();
            self.trailing = 0;
        }
        Ok(())
    }

    fn push(&mut self, c: char, escaped: bool) -> Result<(), DnError> {
        self.decode()?;
        if c == ' ' && !escaped {
            // Unescaped spaces around a value are not part of it.
            if self.value.is_empty() {
                return Ok(());
            }
            self.trailing += 1;
        } else {
            self.trailing = 0;
        }
        self.value.push(c);
        Ok(())
    }

    fn finish(&mut self, rdn: &mut Vec<(String, String)>) -> Result<(), DnError> {
        self.decode()?;
        let ty = self.ty.trim().to_owned();
        if ty.is_empty()
            || !ty
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        {
            return Err(DnError("an attribute type must be like CN, OU or 2.5.4.3"));
        }
        let keep = self.value.len() - self.trailing;
        self.value.truncate(keep);
        rdn.push((ty, std::mem::take(&mut self.value)));
        *self = Self::default();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn written_names_become_canonical() {
        assert_eq!(
            parse_dn("CN=alice, O=Agency").unwrap(),
            "CN=alice, O=Agency"
        );
        assert_eq!(parse_dn("cn=alice,o=Agency").unwrap(), "CN=alice, O=Agency");
        assert_eq!(
            parse_dn("CN = alice ,  O=Agency A").unwrap(),
            "CN=alice, O=Agency A"
        );
        assert_eq!(parse_dn("CN=a+UID=1, O=x").unwrap(), "CN=a+UID=1, O=x");
        for bad in ["", "alice", "CN=a,", "=a", "CN=a, O", "CN=a\\"] {
            assert!(parse_dn(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_comma_inside_a_value_is_not_a_new_rdn() {
        let forged = canonical_dn([[("CN", "alice, O=Agency A")]]);
        assert_eq!(forged, "CN=alice\\, O\\=Agency A");
        assert_ne!(forged, parse_dn("CN=alice, O=Agency A").unwrap());
        assert_eq!(parse_dn("CN=alice\\, O\\=Agency A").unwrap(), forged);
        assert_eq!(parse_dn("CN=alice\\2C O\\3DAgency A").unwrap(), forged);
    }

    proptest! {
        // A name printed canonically parses back to itself, whatever its values hold.
        #[test]
        fn canonical_names_parse_back(values in proptest::collection::vec(proptest::collection::vec(("CN|O|OU|C|UID", "\\PC{1,12}"), 1..3), 1..4)) {
            let canonical = canonical_dn(values.iter().map(|r| r.iter().map(|(t, v)| (t.as_str(), v.as_str()))));
            prop_assert_eq!(parse_dn(&canonical), Ok(canonical.clone()));
        }
    }
}
