//! The glob of `[[application]] match` and repository suppressions: `*` matches any run of
//! characters (slashes and colons included), `?` exactly one, everything else itself, ASCII case
//! ignored (registry names are case-insensitive; repositories are lowercase).

/// Whether `pattern` matches all of `text`.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().map(|c| c.to_ascii_lowercase()).collect();
    let t: Vec<char> = text.chars().map(|c| c.to_ascii_lowercase()).collect();
    // Iterative matcher with one backtrack point: linear in practice, no recursion to blow up.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Whether a glob is usable: not empty, no spaces or control characters.
pub fn check_glob(pattern: &str) -> bool {
    !pattern.is_empty() && !pattern.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_cross_slashes_and_question_marks_take_one_character() {
        assert!(glob_match(
            "contosoprod*/payments/*",
            "contosoprod.azurecr.io/payments/api"
        ));
        assert!(glob_match("*/web/*:v?", "r.io/web/frontend:v1"));
        assert!(!glob_match("*/web/*:v?", "r.io/web/frontend:v10"));
        assert!(glob_match("*", ""));
        assert!(glob_match("A*", "abc"));
        assert!(!glob_match("contosodev*", "contosoprod.azurecr.io/x"));
        assert!(glob_match("*a*b*c*", "xxaxxbxxcxx"));
        assert!(!glob_match("*a*b*c", "xxaxxbxxcxx"));
    }

    #[test]
    fn blank_or_spaced_globs_are_unusable() {
        assert!(check_glob("a*"));
        assert!(!check_glob(""));
        assert!(!check_glob("a b"));
    }
}
