//! Deterministic fake identities: names, companies, emails and keys, all drawn from one
//! seeded generator so a seed always yields the same account.

use std::collections::HashSet;

use rand::{rngs::StdRng, Rng, SeedableRng};

const FIRST: &[&str] = &[
    "Ava", "Liam", "Maya", "Noah", "Zoe", "Ethan", "Iris", "Omar", "Lena", "Hugo", "Priya", "Mateo", "Chloe", "Kenji", "Sofia", "Diego",
    "Amara", "Felix", "Hana", "Jonas", "Nadia", "Oscar", "Ruby", "Tariq", "Elena", "Marco", "Aisha", "Lucas", "Freya", "Kwame", "Ines",
    "Theo", "Yara", "Leo", "Mila", "Ravi", "Greta", "Samir", "Julia", "Emeka",
];
const LAST: &[&str] = &[
    "Nguyen",
    "Smith",
    "Garcia",
    "Okafor",
    "Muller",
    "Rossi",
    "Tanaka",
    "Kowalski",
    "Silva",
    "Haddad",
    "Johansson",
    "Patel",
    "Dubois",
    "Kim",
    "Novak",
    "Fernandez",
    "Larsen",
    "Mensah",
    "Costa",
    "Ivanova",
    "Brown",
    "Schmidt",
    "Moreau",
    "Sato",
    "Khan",
    "Walsh",
    "Lopez",
    "Berg",
    "Adeyemi",
    "Horvat",
];
const COMPANY_HEAD: &[&str] = &[
    "Blue", "North", "Bright", "Iron", "Silver", "Rapid", "Clear", "Summit", "Harbor", "Pine", "Atlas", "Nova", "Cedar", "Orbit", "Vertex",
    "Lumen", "Copper", "Maple", "Signal", "Delta",
];
const COMPANY_TAIL: &[&str] =
    &["Labs", "Works", "Digital", "Media", "Systems", "Partners", "Analytics", "Studio", "Cloud", "Group", "Ventures", "Solutions"];
const TLD: &[&str] = &["com", "io", "co", "net", "dev", "agency"];
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// The seeded generator plus every identifier handed out so far, so keys and external
/// keys are unique for the life of the simulator (also after a hard delete).
pub(super) struct Fake {
    pub rng: StdRng,
    taken: HashSet<String>,
}

/// A person's name and email.
#[derive(Clone, Debug)]
pub(super) struct Person {
    pub first: String,
    pub last: String,
    pub email: String,
    pub company: String,
}

impl Fake {
    pub fn new(seed: u64) -> Fake {
        Fake { rng: StdRng::seed_from_u64(seed), taken: HashSet::new() }
    }

    /// A new unique identifier made by `make`.
    pub fn unique(&mut self, mut make: impl FnMut(&mut StdRng) -> String) -> String {
        loop {
            let id = make(&mut self.rng);
            if self.taken.insert(id.clone()) {
                return id;
            }
        }
    }

    /// Marks an identifier a client chose as taken, so the generator never hands it out
    /// too; `false` when it already was.
    pub fn claim(&mut self, id: &str) -> bool {
        self.taken.insert(id.to_owned())
    }

    /// A new unique key such as `deal_Xk3pQ9aZ0bWm2L`.
    pub fn key(&mut self, prefix: &str) -> String {
        self.unique(|rng| format!("{prefix}{}", alnum(rng, 14)))
    }

    /// A random token (not checked for uniqueness): provider ids, link keys, invoice numbers.
    pub fn token(&mut self, prefix: &str, len: usize) -> String {
        format!("{prefix}{}", alnum(&mut self.rng, len))
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.rng.gen_range(0..items.len())]
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.rng.gen_bool(p.clamp(0.0, 1.0))
    }

    /// A uniform integer in `lo..=hi` (just `lo` when the range is empty).
    pub fn between(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            lo
        } else {
            self.rng.gen_range(lo..=hi)
        }
    }

    /// A uniform float in `0..1`.
    pub fn unit(&mut self) -> f64 {
        self.rng.gen()
    }

    pub fn company(&mut self) -> String {
        format!("{} {}", self.pick(COMPANY_HEAD), self.pick(COMPANY_TAIL))
    }

    /// Someone at a company; the email is made unique with a number when needed.
    pub fn person(&mut self) -> Person {
        let (first, last, company) = (self.pick(FIRST).to_owned(), self.pick(LAST).to_owned(), self.company());
        let tld = self.pick(TLD);
        let domain = format!("{}.{tld}", slug(&company));
        let base = format!("{}.{}", slug(&first), slug(&last));
        let email = self.unique(|rng| {
            let n: u32 = rng.gen_range(0..1000);
            if n < 400 {
                format!("{base}@{domain}")
            } else {
                format!("{base}{n}@{domain}")
            }
        });
        Person { first, last, email, company }
    }
}

/// Lower-case letters and digits only: the group slug and email-local style.
pub(super) fn slug(s: &str) -> String {
    s.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect()
}

fn alnum(rng: &mut StdRng, len: usize) -> String {
    (0..len).map(|_| ALNUM[rng.gen_range(0..ALNUM.len())] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_identities_and_keys_never_repeat() {
        let (mut a, mut b) = (Fake::new(3), Fake::new(3));
        for _ in 0..50 {
            assert_eq!(a.person().email, b.person().email);
            assert_eq!(a.key("deal_"), b.key("deal_"));
        }
        let mut f = Fake::new(1);
        let keys: HashSet<String> = (0..2_000).map(|_| f.unique(|rng| format!("k{}", rng.gen_range(0..5_000)))).collect();
        assert_eq!(keys.len(), 2_000);
    }
}
