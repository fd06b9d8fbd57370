//! What a dashboard page was asked to show: the date range (a preset such as `range=7d`, or
//! custom `from`/`to` dates), and for the pages table its sort column and page. Parsing is
//! strict (anything unknown is a 400 saying what was wrong) and links are built back from
//! a selection, so every link on a page keeps what the reader chose and drops defaults.

use super::html::Html;
use crate::http::HttpError;
use crate::insights::pages::Sort;
use crate::insights::{self, Range};
use crate::paths::normalize;
use crate::query;
use crate::time::{self, Date, Day};

/// Rows of the pages table per page.
pub const PAGE_ROWS: usize = 100;
/// The highest `page` asked for that is not refused outright (a million rows).
const MAX_PAGE: i64 = 10_000;

/// Ranges offered as plain links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Last7,
    Last30,
    Last90,
    Last365,
    ThisMonth,
    LastMonth,
    ThisYear,
}

impl Preset {
    pub const ALL: [Preset; 7] = [
        Preset::Last7,
        Preset::Last30,
        Preset::Last90,
        Preset::Last365,
        Preset::ThisMonth,
        Preset::LastMonth,
        Preset::ThisYear,
    ];
    /// The 30 days ending today, as in the API.
    pub const DEFAULT: Preset = Preset::Last30;

    pub fn key(self) -> &'static str {
        match self {
            Preset::Last7 => "7d",
            Preset::Last30 => "30d",
            Preset::Last90 => "90d",
            Preset::Last365 => "365d",
            Preset::ThisMonth => "month",
            Preset::LastMonth => "last-month",
            Preset::ThisYear => "year",
        }
    }

    /// The link's text.
    pub fn label(self) -> &'static str {
        match self {
            Preset::Last7 => "7 days",
            Preset::Last30 => "30 days",
            Preset::Last90 => "90 days",
            Preset::Last365 => "365 days",
            Preset::ThisMonth => "This month",
            Preset::LastMonth => "Last month",
            Preset::ThisYear => "This year",
        }
    }

    /// How the range is described above the figures.
    pub fn description(self) -> &'static str {
        match self {
            Preset::Last7 => "Last 7 days",
            Preset::Last30 => "Last 30 days",
            Preset::Last90 => "Last 90 days",
            Preset::Last365 => "Last 365 days",
            Preset::ThisMonth => "This month so far",
            Preset::LastMonth => "Last month",
            Preset::ThisYear => "This year so far",
        }
    }

    fn parse(key: &str) -> Option<Preset> {
        Preset::ALL.into_iter().find(|preset| preset.key() == key)
    }

    /// The local days it covers, today included where it reaches today.
    pub fn range(self, today: Day) -> Range {
        let days = |n| Range::ending(today, n);
        match self {
            Preset::Last7 => days(7),
            Preset::Last30 => days(insights::DEFAULT_RANGE_DAYS),
            Preset::Last90 => days(90),
            Preset::Last365 => days(365),
            Preset::ThisMonth => Range {
                first: today.month_start(),
                last: today,
            },
            Preset::LastMonth => {
                let last = today.month_start().plus(-1);
                Range {
                    first: last.month_start(),
                    last,
                }
            }
            Preset::ThisYear => {
                let year = today.date().year;
                let first = time::days_of(Date {
                    year,
                    month: 1,
                    day: 1,
                });
                Range {
                    first: Day::from_days(first as i32),
                    last: today,
                }
            }
        }
    }
}

/// How the range was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Preset(Preset),
    /// `from`/`to` dates (one may have been left out).
    Custom,
}

/// A page's query, understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selection {
    pub choice: Choice,
    pub range: Range,
    pub sort: Sort,
    /// From 1.
    pub page: usize,
}

impl Selection {
    /// From a query string (`range`, or `from`/`to`; `sort`, `page`). Empty `from`/`to`
    /// values, as a date form sends when a field is cleared, count as absent.
    pub fn parse(query: Option<&str>, today: Day) -> Result<Selection, HttpError> {
        let preset = query::param(query, "range")?;
        let from = query::param(query, "from")?.filter(|v| !v.is_empty());
        let to = query::param(query, "to")?.filter(|v| !v.is_empty());
        let (choice, range) = match (preset, from.is_some() || to.is_some()) {
            (Some(_), true) => {
                return Err(HttpError::bad_request(
                    "give either `range` or `from`/`to` dates, not both",
                ));
            }
            (Some(key), false) => {
                let preset = Preset::parse(&key).ok_or_else(|| {
                    HttpError::bad_request(
                        "unknown `range`: use 7d, 30d, 90d, 365d, month, last-month or year",
                    )
                })?;
                (Choice::Preset(preset), preset.range(today))
            }
            (None, true) => {
                // The API's own rules and messages, on the non-empty dates only.
                let mut dates = Html::new();
                for (name, value) in [("from", &from), ("to", &to)] {
                    if let Some(value) = value {
                        if !dates.is_empty() {
                            dates.raw("&");
                        }
                        dates
                            .raw(if name == "from" { "from=" } else { "to=" })
                            .url_component(value);
                    }
                }
                (
                    Choice::Custom,
                    Range::from_query(Some(dates.as_str()), today)?,
                )
            }
            (None, false) => (
                Choice::Preset(Preset::DEFAULT),
                Preset::DEFAULT.range(today),
            ),
        };
        let sort = match query::param(query, "sort")? {
            None => Sort::Visits,
            Some(key) => Sort::parse(&key).ok_or_else(|| {
                HttpError::bad_request(
                    "unknown `sort`: use path, views, visits, visitors, engagement or spent",
                )
            })?,
        };
        let page = insights::number_param(query, "page", 1, 1, MAX_PAGE)? as usize;
        Ok(Selection {
            choice,
            range,
            sort,
            page,
        })
    }

    /// The table rows this page starts at.
    pub fn offset(&self) -> usize {
        (self.page - 1) * PAGE_ROWS
    }

    /// Above the figures: `Last 30 days`, or the custom dates.
    pub fn description(&self) -> &'static str {
        match self.choice {
            Choice::Preset(preset) => preset.description(),
            Choice::Custom => "Custom range",
        }
    }
}

/// Which page a link goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    Site,
    Path(&'a str),
}

/// A link to a dashboard page keeping the reader's choices; parameters at their defaults
/// are left out, so the plain dashboard is just `/`.
#[derive(Debug, Clone, Copy)]
pub struct Link<'a> {
    pub target: Target<'a>,
    pub choice: Choice,
    pub range: Range,
    pub sort: Sort,
    pub page: usize,
}

impl<'a> Link<'a> {
    /// The same choices on another page (the table's position does not carry over).
    pub fn new(target: Target<'a>, selection: &Selection) -> Link<'a> {
        Link {
            target,
            choice: selection.choice,
            range: selection.range,
            sort: selection.sort,
            page: 1,
        }
    }

    pub fn preset(self, preset: Preset) -> Link<'a> {
        Link {
            choice: Choice::Preset(preset),
            page: 1,
            ..self
        }
    }

    pub fn sort(self, sort: Sort) -> Link<'a> {
        Link {
            sort,
            page: 1,
            ..self
        }
    }

    pub fn page(self, page: usize) -> Link<'a> {
        Link { page, ..self }
    }

    /// Writes the URL, ready for an `href` attribute.
    pub fn write(&self, out: &mut Html) {
        let mut separator = "?";
        let mut next = |out: &mut Html| {
            out.raw(separator);
            separator = "&amp;";
        };
        match self.target {
            Target::Site => {
                out.raw("/");
            }
            Target::Path(path) => {
                // The path in the form count.js sends it, so every stored path (`?` and `%`
                // included) comes back as itself.
                out.raw("/stats");
                next(out);
                out.raw("path=")
                    .url_component(&normalize::request_target(path));
            }
        }
        match self.choice {
            Choice::Preset(Preset::DEFAULT) => {}
            Choice::Preset(preset) => {
                next(out);
                out.raw("range=").raw(preset.key());
            }
            Choice::Custom => {
                next(out);
                out.raw("from=")
                    .text(&self.range.first.to_string())
                    .raw("&amp;to=")
                    .text(&self.range.last.to_string());
            }
        }
        if self.target == Target::Site {
            if self.sort != Sort::Visits {
                next(out);
                out.raw("sort=").raw(self.sort.key());
            }
            if self.page > 1 {
                next(out);
                out.raw("page=").number(self.page as f64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> Day {
        Day::parse(text).unwrap()
    }

    fn parse(query: &str) -> Result<Selection, HttpError> {
        Selection::parse(Some(query), day("2024-03-15"))
    }

    fn href(link: Link) -> String {
        let mut out = Html::new();
        link.write(&mut out);
        out.into_string()
    }

    #[test]
    fn presets_cover_the_days_they_name() {
        let today = day("2024-03-15");
        let range = |preset: Preset| {
            let range = preset.range(today);
            (range.first.to_string(), range.last.to_string())
        };
        let owned = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(range(Preset::Last7), owned("2024-03-09", "2024-03-15"));
        assert_eq!(range(Preset::Last30), owned("2024-02-15", "2024-03-15"));
        assert_eq!(range(Preset::Last90).1, "2024-03-15");
        assert_eq!(Preset::Last365.range(today).days(), 365);
        assert_eq!(range(Preset::ThisMonth), owned("2024-03-01", "2024-03-15"));
        assert_eq!(range(Preset::LastMonth), owned("2024-02-01", "2024-02-29"));
        assert_eq!(range(Preset::ThisYear), owned("2024-01-01", "2024-03-15"));
        assert_eq!(
            Preset::LastMonth.range(day("2024-01-10")).first,
            day("2023-12-01")
        );
    }

    #[test]
    fn queries_choose_a_range_a_sort_and_a_page() {
        let default = Selection::parse(None, day("2024-03-15")).unwrap();
        assert_eq!(default.choice, Choice::Preset(Preset::Last30));
        assert_eq!(default.range.days(), 30);
        assert_eq!(
            (default.sort, default.page, default.offset()),
            (Sort::Visits, 1, 0)
        );

        let week = parse("range=7d&sort=engagement&page=3").unwrap();
        assert_eq!(week.choice, Choice::Preset(Preset::Last7));
        assert_eq!(
            (week.sort, week.page, week.offset()),
            (Sort::Engagement, 3, 200)
        );

        let custom = parse("from=2024-01-01&to=2024-01-31").unwrap();
        assert_eq!(custom.choice, Choice::Custom);
        assert_eq!(custom.range.days(), 31);
        assert_eq!(custom.description(), "Custom range");
        let cleared = parse("from=&to=2024-01-31").unwrap();
        assert_eq!(cleared.range.last, day("2024-01-31"));
        assert_eq!(cleared.range.days(), 30, "an emptied field is left out");
        let both_empty = parse("from=&to=").unwrap();
        assert_eq!(both_empty.choice, Choice::Preset(Preset::Last30));

        for (bad, says) in [
            ("range=2y", "unknown `range`"),
            ("range=7d&from=2024-01-01", "not both"),
            ("from=2024-02-01&to=2024-01-01", "is after"),
            ("from=2024-13-01", "malformed `from`"),
            ("from=2000-01-01&to=2024-01-01", "at most"),
            ("sort=bounce", "unknown `sort`"),
            ("page=0", "malformed `page`"),
            ("page=two", "malformed `page`"),
            ("page=99999999999", "malformed `page`"),
            ("range=7d&range=30d", "more than once"),
        ] {
            let error = parse(bad).unwrap_err();
            assert_eq!(error.status, 400, "{bad}");
            assert!(error.message.contains(says), "{bad}: {}", error.message);
        }
    }

    #[test]
    fn links_keep_the_choices_and_drop_the_defaults() {
        let default = parse("").unwrap();
        assert_eq!(href(Link::new(Target::Site, &default)), "/");
        let selection = parse("range=90d&sort=views&page=2").unwrap();
        let here = Link::new(Target::Site, &selection).page(selection.page);
        assert_eq!(href(here), "/?range=90d&amp;sort=views&amp;page=2");
        assert_eq!(href(here.page(3)), "/?range=90d&amp;sort=views&amp;page=3");
        assert_eq!(
            href(here.sort(Sort::Path)),
            "/?range=90d&amp;sort=path",
            "a new order starts at its first page"
        );
        assert_eq!(
            href(here.preset(Preset::Last30)),
            "/?sort=views",
            "a new range starts at the first page"
        );
        let custom = parse("from=2024-01-01&to=2024-01-31&sort=spent").unwrap();
        assert_eq!(
            href(Link::new(Target::Path("/a b&c\"<x>?"), &custom)),
            "/stats?path=/a%2520b%26c%2522%253Cx%253E%253F&amp;from=2024-01-01&amp;to=2024-01-31",
            "the path as count.js sends it, encoded; the table's sort stays on the site page"
        );
        assert_eq!(
            href(Link::new(Target::Path("/"), &default).preset(Preset::ThisYear)),
            "/stats?path=/&amp;range=year"
        );
    }
}
