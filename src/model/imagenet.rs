//! The 1000 ImageNet (ILSVRC 2012) classes, compiled in: their names, as the authors' models
//! number them, and their WordNet ids (`n01440764`, ...), whose sorted order is the class
//! index. Importing the authors' weights labels the model with these names; `activeshift eval
//! --images` reads the class of an image from the wnid of its folder or file name.

/// The class names, one per line in class-index order.
pub const CLASS_NAMES: &str = include_str!("../../assets/imagenet_classes.txt");

/// The WordNet ids, one per line in class-index order (which is their sorted order).
pub const WNIDS: &str = include_str!("../../assets/imagenet_wnids.txt");

/// The 1000 class names in class-index order.
pub fn labels() -> Vec<String> {
    super::read_labels(CLASS_NAMES)
}

/// The 1000 WordNet ids in class-index order.
pub fn wnids() -> Vec<&'static str> {
    WNIDS
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
}

/// The class index of a WordNet id (`n02124075` -> 285), if it is one of the 1000.
pub fn class_of_wnid(wnid: &str) -> Option<usize> {
    wnids().binary_search(&wnid).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thousand_sorted_wnids_and_names() {
        let w = wnids();
        assert_eq!(w.len(), 1000);
        assert!(w.windows(2).all(|p| p[0] < p[1]), "wnids must be sorted");
        assert!(w.iter().all(|id| id.len() == 9 && id.starts_with('n')));
        let l = labels();
        assert_eq!(l.len(), 1000);
        // Spot checks against the published list: first, last, and the test photo's class.
        assert_eq!((w[0], l[0].as_str()), ("n01440764", "tench, Tinca tinca"));
        assert_eq!((w[285], l[285].as_str()), ("n02124075", "Egyptian cat"));
        assert_eq!(w[999], "n15075141");
        assert_eq!(class_of_wnid("n02123045"), Some(281));
        assert_eq!(class_of_wnid("n99999999"), None);
    }
}
