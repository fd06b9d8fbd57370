//! Dashboard pages from plain data: no database, no request, so the pages can be tested and
//! benchmarked on their own. The handlers in `mod.rs` gather the data; everything here
//! writes into one [`Html`] buffer, and every value that came from a visitor (paths,
//! referrers, campaign parameters) goes through its escaping methods.

use hyper::header::HeaderValue;

use super::chart;
use super::format::{self, Change, Measure, plural, write_plural};
use super::html::{Html, Template, grouped};
use super::selection::{Choice, Link, PAGE_ROWS, Preset, Selection, Target};
use crate::db::rollups::DayCounts;
use crate::http::Cached;
use crate::insights::pages::{Page, Sort};
use crate::insights::{Campaign, Host, Period, Summary};
use crate::live::LiveView;
use crate::paths::normalize;
use crate::time::Day;

pub const CSS: &str = include_str!("../../assets/style.css");

/// Referring hosts asked for (as many as the API's default: with fewer hosts than this,
/// visits without a referrer are known exactly), and referring pages under each.
pub const HOSTS: i64 = 100;
pub const REFERRERS_PER_HOST: i64 = 10;
/// Campaigns asked for.
pub const CAMPAIGNS: i64 = 50;
/// Busiest open pages listed under "Live".
const LIVE_PATHS: usize = 10;

/// What every page shows about the tracker itself.
pub struct Context<'a> {
    pub site: &'a str,
    pub base_url: &'a str,
    pub min_delay_secs: u32,
}

/// What both pages show about their scope (the site, or one path) over the chosen range.
pub struct Overview {
    pub today: Day,
    pub selection: Selection,
    pub summary: Summary,
    /// Every day of the range, oldest first, zeros included.
    pub days: Vec<DayCounts>,
    /// At most [`HOSTS`], most visits first.
    pub hosts: std::sync::Arc<Vec<Host>>,
    /// At most [`CAMPAIGNS`], most visits first.
    pub campaigns: std::sync::Arc<Vec<Campaign>>,
}

/// `/`: the site.
pub struct IndexData {
    pub overview: Overview,
    /// One page of the pages table, in `overview.selection`'s order.
    pub pages: Page,
    pub live: LiveView,
    /// No page was ever registered: show the script tag to paste.
    pub getting_started: bool,
}

/// `/stats?path=`: one path.
pub struct StatsData {
    pub path: String,
    pub overview: Overview,
    /// Visitors with this page open now.
    pub live_visitors: i64,
}

/// Templates and the stylesheet, prepared once.
pub struct Pages {
    page: Template,
    index: Template,
    stats: Template,
    message: Template,
    /// The stylesheet; pages link it with its version, so it can be cached for a year.
    pub css: Cached,
    css_version: Html,
}

impl Default for Pages {
    fn default() -> Pages {
        Pages::new()
    }
}

fn href(out: &mut Html, link: Link) {
    out.raw("href=\"");
    link.write(out);
    out.raw("\"");
}

impl Pages {
    pub fn new() -> Pages {
        let css = Cached::new(
            CSS,
            HeaderValue::from_static("text/css; charset=utf-8"),
            HeaderValue::from_static("public, max-age=31536000, immutable"),
        );
        let mut css_version = Html::new();
        css_version.url_component(css.version());
        Pages {
            page: Template::parse(include_str!("../../assets/page.html")),
            index: Template::parse(include_str!("../../assets/index.html")),
            stats: Template::parse(include_str!("../../assets/stats.html")),
            message: Template::parse(include_str!("../../assets/message.html")),
            css,
            css_version,
        }
    }

    /// A whole page: the layout around what `content` writes, into `out`.
    fn page(
        &self,
        out: &mut Html,
        context: &Context,
        title: &str,
        content: impl FnOnce(&mut Html),
    ) {
        let mut content = Some(content);
        self.page.render_with(out, |slot, out| match slot {
            "title" => {
                out.text(title);
            }
            "css_version" => {
                out.append(&self.css_version);
            }
            "site" => {
                out.text(context.site);
            }
            "min_delay" => {
                out.number(context.min_delay_secs);
            }
            "content" => {
                if let Some(content) = content.take() {
                    content(out);
                }
            }
            _ => unfilled(slot),
        });
    }

    /// A page that says what went wrong.
    pub fn message(&self, context: &Context, heading: &str, message: &str) -> Html {
        let mut out = Html::with_capacity(4096);
        self.page(&mut out, context, heading, |out| {
            self.message.render_with(out, |slot, out| match slot {
                "heading" => {
                    out.text(heading);
                }
                "message" => {
                    out.text(message);
                }
                _ => unfilled(slot),
            })
        });
        out
    }

    /// `/`: the whole site.
    pub fn index(&self, context: &Context, data: &IndexData) -> Html {
        let overview = &data.overview;
        let selection = &overview.selection;
        let mut out = Html::with_capacity(size_hint(overview) + data.pages.rows.len() * 400);
        self.page(&mut out, context, "Dashboard", |out| {
            self.index.render_with(out, |slot, out| match slot {
                "heading" => heading(
                    out,
                    overview,
                    |out| {
                        out.text(host_of(context.site));
                    },
                    |out| live_badge(out, data.live.visitors, "now"),
                ),
                "ranges" => range_picker(out, Target::Site, overview),
                "cards" => cards(out, &overview.summary),
                "daily" => daily_section(out, overview, context.min_delay_secs),
                "getting_started" => {
                    if data.getting_started {
                        getting_started(out, context);
                    }
                }
                "pages" => pages_table(out, &data.pages, selection),
                "referrers" => referrers(out, &overview.hosts, overview.summary.current.visits),
                "campaigns" => campaigns(out, &overview.campaigns),
                "spent" => spent_section(out, &overview.summary.current),
                "live" => live_site(out, &data.live, selection),
                _ => unfilled(slot),
            })
        });
        out
    }

    /// `/stats?path=`: one path.
    pub fn stats(&self, context: &Context, data: &StatsData) -> Html {
        let overview = &data.overview;
        let selection = &overview.selection;
        let mut out = Html::with_capacity(size_hint(overview));
        self.page(&mut out, context, &data.path, |out| {
            self.stats.render_with(out, |slot, out| match slot {
                "back" => Link::new(Target::Site, selection).write(out),
                "heading" => heading(
                    out,
                    overview,
                    |out| {
                        out.raw("<span class=\"path\">")
                            .text(&data.path)
                            .raw("</span> <a class=\"open\" href=\"")
                            .text(context.site)
                            .text(&normalize::request_target(&data.path))
                            .raw("\" rel=\"noopener noreferrer\">open page ↗</a>");
                    },
                    |out| live_badge(out, data.live_visitors, "on this page now"),
                ),
                "ranges" => range_picker(out, Target::Path(&data.path), overview),
                "cards" => cards(out, &overview.summary),
                "daily" => daily_section(out, overview, context.min_delay_secs),
                "referrers" => referrers(out, &overview.hosts, overview.summary.current.visits),
                "campaigns" => campaigns(out, &overview.campaigns),
                "spent" => spent_section(out, &overview.summary.current),
                "live" => live_path(out, data.live_visitors),
                _ => unfilled(slot),
            })
        });
        out
    }
}

/// A placeholder this code does not fill: a bug, caught by the tests that render every page.
fn unfilled(slot: &str) {
    debug_assert!(false, "template placeholder {{{{{slot}}}}} has no value");
}

/// About how large a page over `overview` gets, so its buffer is allocated once.
fn size_hint(overview: &Overview) -> usize {
    let referrers: usize = overview.hosts.iter().map(|h| 1 + h.referrers.len()).sum();
    16 * 1024
        + overview.days.len().min(chart::MAX_DAILY_COLUMNS) * 420
        + referrers * 200
        + overview.campaigns.len() * 200
}

/// `example.org` from `https://example.org`: the site's name as a heading.
fn host_of(site: &str) -> &str {
    site.split_once("://").map_or(site, |(_, rest)| rest)
}

/// `3 visitors now`, linking to the live section.
fn live_badge(out: &mut Html, visitors: i64, when: &'static str) {
    out.raw("<a class=\"live-badge\" href=\"#live\"><span class=\"dot")
        .raw(if visitors > 0 { " on" } else { "" })
        .raw("\" aria-hidden=\"true\"></span>");
    write_plural(out, visitors, "visitor", "visitors")
        .raw(" ")
        .raw(when)
        .raw("</a>");
}

/// The page's heading, the range it shows, and the live badge.
fn heading(
    out: &mut Html,
    overview: &Overview,
    title: impl FnOnce(&mut Html),
    live_badge: impl FnOnce(&mut Html),
) {
    let range = overview.selection.range;
    out.raw("<div class=\"heading\"><div><h1>");
    title(out);
    out.raw("</h1><p class=\"period\">")
        .text(overview.selection.description())
        .raw(": ");
    if range.days() == 1 {
        out.text(&range.first.to_string());
    } else {
        out.text(&range.first.to_string())
            .raw(" to ")
            .text(&range.last.to_string())
            .raw(" (")
            .text(&plural(i64::from(range.days()), "day", "days"))
            .raw(")");
    }
    out.raw("</p></div>");
    live_badge(out);
    out.raw("</div>");
}

/// Presets as plain links and a custom from/to form (a GET form: no script needed).
fn range_picker(out: &mut Html, target: Target, overview: &Overview) {
    let selection = &overview.selection;
    let here = Link::new(target, selection);
    out.raw("<nav class=\"ranges\" aria-label=\"Date range\"><ul class=\"presets\">");
    for preset in Preset::ALL {
        out.raw("<li><a ");
        href(out, here.preset(preset));
        if selection.choice == Choice::Preset(preset) {
            out.raw(" aria-current=\"page\"");
        }
        out.raw(">").raw(preset.label()).raw("</a></li>");
    }
    out.raw("</ul><form class=\"custom\" method=\"get\" action=\"");
    match target {
        Target::Site => {
            out.raw("/\">");
            if selection.sort != Sort::Visits {
                out.raw("<input type=\"hidden\" name=\"sort\" value=\"")
                    .raw(selection.sort.key())
                    .raw("\">");
            }
        }
        Target::Path(path) => {
            out.raw("/stats\"><input type=\"hidden\" name=\"path\" value=\"")
                .text(&normalize::request_target(path))
                .raw("\">");
        }
    }
    let today = overview.today.to_string();
    for (name, label, day) in [
        ("from", "From", selection.range.first),
        ("to", "To", selection.range.last),
    ] {
        out.raw("<label>")
            .raw(label)
            .raw(" <input type=\"date\" name=\"")
            .raw(name)
            .raw("\" value=\"")
            .text(&day.to_string())
            .raw("\" max=\"")
            .text(&today)
            .raw("\"></label>");
    }
    out.raw("<button type=\"submit\"");
    if selection.choice == Choice::Custom {
        out.raw(" class=\"current\"");
    }
    out.raw(">Show</button></form></nav>");
}

/// One stat card's figure, now and before.
struct Figure<'a> {
    label: &'a str,
    value: String,
    previous_value: String,
    change: Change,
    measure: Measure,
}

/// One stat card: the figure, and its change against the previous period (whose dates and
/// figure are in the tooltip).
fn card(out: &mut Html, figure: &Figure, previous: &Period, extra: &'static str) {
    out.raw("<div class=\"stat\"><p class=\"label\">")
        .text(figure.label)
        .raw("</p><p class=\"value\">")
        .text(&figure.value)
        .raw("</p><p class=\"change ")
        .raw(figure.change.class())
        .raw("\" title=\"")
        .text(&format!(
            "{} to {}: {}",
            previous.range.first, previous.range.last, figure.previous_value
        ))
        .raw("\">");
    figure.change.write(
        out,
        figure.measure,
        &format::compared_with(previous.range.days()),
    );
    out.raw("</p>").raw(extra).raw("</div>");
}

/// Views, visits, visitors, engagement and median time, each against the previous period.
fn cards(out: &mut Html, summary: &Summary) {
    let (now, before) = (&summary.current, &summary.previous);
    out.raw("<section class=\"cards\" aria-label=\"Totals\">");
    for (label, current, previous) in [
        ("Views", now.views, before.views),
        ("Visits", now.visits, before.visits),
        ("Visitors", now.visitors, before.visitors),
    ] {
        let figure = Figure {
            label,
            value: grouped(current),
            previous_value: grouped(previous),
            change: Change::of_counts(current, previous),
            measure: Measure::Relative,
        };
        card(out, &figure, before, "");
    }
    let engagement = Figure {
        label: "Engagement",
        value: format::percent(now.engagement()),
        previous_value: format::percent(before.engagement()),
        change: Change::of_rates(now.engagement(), before.engagement()),
        measure: Measure::Points,
    };
    card(out, &engagement, before, "");
    let median = Figure {
        label: "Median time on page",
        value: format::estimate(now.median_spent()),
        previous_value: format::estimate(before.median_spent()),
        change: Change::of_estimates(now.median_spent(), before.median_spent()),
        measure: Measure::Relative,
    };
    card(
        out,
        &median,
        before,
        "<p class=\"note\"><a href=\"#time-on-page\">Estimated from histogram buckets</a></p>",
    );
    out.raw("</section>");
}

/// The daily chart, its legend, the words behind the figures, and the numbers as a table.
fn daily_section(out: &mut Html, overview: &Overview, min_delay_secs: u32) {
    let (columns, unit) = chart::columns(&overview.days);
    let per = match unit {
        chart::Unit::Day => "day",
        chart::Unit::Month => "month",
    };
    out.raw("<section class=\"card\" id=\"daily\" aria-labelledby=\"daily-heading\"><div class=\"card-head\"><h2 id=\"daily-heading\">Per ")
        .raw(per)
        .raw("</h2>");
    chart::legend(out);
    out.raw("</div>");
    chart::daily(out, &columns, unit, overview.today);
    out.raw("<p class=\"note\"><strong>Views</strong>: pages opened. <strong>Visits</strong>: views that stayed at least ")
        .number(min_delay_secs)
        .raw(" s. <strong>Visitors</strong>: browsers, each counted once a day, summed over the days. <strong>Engagement</strong>: visits ÷ views.</p>")
        .raw("<details class=\"data\"><summary>Numbers per ")
        .raw(per)
        .raw("</summary><div class=\"table-scroll\"><table><thead><tr><th scope=\"col\">")
        .raw(if unit == chart::Unit::Day { "Day" } else { "Month" })
        .raw("</th><th scope=\"col\" class=\"num\">Views</th><th scope=\"col\" class=\"num\">Visits</th><th scope=\"col\" class=\"num\">Visitors</th></tr></thead><tbody>");
    // Newest first: the recent days are what a reader looks for.
    for column in columns.iter().rev() {
        out.raw("<tr><td>");
        match unit {
            chart::Unit::Day => out.text(&column.first.to_string()),
            chart::Unit::Month => out.text(&column.first.month_label()),
        };
        out.raw("</td><td class=\"num\">")
            .count(column.views)
            .raw("</td><td class=\"num\">")
            .count(column.visits)
            .raw("</td><td class=\"num\">")
            .count(column.visitors)
            .raw("</td></tr>");
    }
    out.raw("</tbody></table></div></details></section>");
}

/// The table's columns: heading, sort, numeric.
const COLUMNS: [(&str, Sort, bool); 6] = [
    ("Path", Sort::Path, false),
    ("Views", Sort::Views, true),
    ("Visits", Sort::Visits, true),
    ("Visitors", Sort::Visitors, true),
    ("Engagement", Sort::Engagement, true),
    ("Median time", Sort::Spent, true),
];

/// One page of the pages table, sortable by every column, with links to the other pages.
fn pages_table(out: &mut Html, page: &Page, selection: &Selection) {
    let here = Link::new(Target::Site, selection).page(selection.page);
    let page_count = page.total.div_ceil(PAGE_ROWS).max(1);
    out.raw("<div class=\"card-head\"><h2 id=\"pages-heading\">Pages</h2><p class=\"note\">");
    write_plural(out, page.total as i64, "page", "pages");
    out.raw(" with views or visits in this range</p></div>");
    if page.total == 0 {
        out.raw("<p class=\"empty-note\">No page had views or visits in this range.</p>");
        return;
    }
    out.raw("<div class=\"table-scroll\"><table class=\"pages\"><thead><tr>");
    for (label, sort, numeric) in COLUMNS {
        out.raw("<th scope=\"col\"");
        if numeric {
            out.raw(" class=\"num\"");
        }
        let current = sort == selection.sort;
        if current {
            out.raw(if sort == Sort::Path {
                " aria-sort=\"ascending\""
            } else {
                " aria-sort=\"descending\""
            });
        }
        out.raw("><a ");
        href(out, here.sort(sort));
        out.raw(" title=\"")
            .raw(if sort == Sort::Path {
                "Sort by path, A to Z"
            } else {
                "Sort by this column, largest first"
            })
            .raw("\">")
            .raw(label);
        if current {
            out.raw("<span class=\"arrow\" aria-hidden=\"true\">")
                .raw(if sort == Sort::Path { " ▲" } else { " ▼" })
                .raw("</span>");
        }
        out.raw("</a></th>");
    }
    out.raw("</tr></thead><tbody>");
    for row in &page.rows {
        out.raw("<tr><td class=\"path\"><a ");
        href(out, Link::new(Target::Path(&row.path), selection));
        out.raw(">")
            .text(&row.path)
            .raw("</a></td><td class=\"num\">")
            .count(row.views)
            .raw("</td><td class=\"num\">")
            .count(row.visits)
            .raw("</td><td class=\"num\">")
            .count(row.visitors)
            .raw("</td><td class=\"num\">")
            .text(&format::percent(row.engagement))
            .raw("</td><td class=\"num\">")
            .text(&format::median_seconds(row.median_spent))
            .raw("</td></tr>");
    }
    if page.rows.is_empty() {
        out.raw("<tr><td colspan=\"6\" class=\"empty-note\">There is no page ")
            .count(selection.page as i64)
            .raw(": the table has ");
        write_plural(out, page_count as i64, "page", "pages");
        out.raw(".</td></tr>");
    }
    out.raw("</tbody></table></div>");
    if page_count > 1 || selection.page > 1 {
        out.raw("<nav class=\"pager\" aria-label=\"Pages of the table\">");
        if selection.page > 1 {
            out.raw("<a rel=\"prev\" ");
            href(out, here.page((selection.page - 1).min(page_count)));
            out.raw(">← Previous</a>");
        } else {
            out.raw("<span class=\"disabled\">← Previous</span>");
        }
        let first_row = selection.offset() + 1;
        out.raw("<span>Page ")
            .count(selection.page as i64)
            .raw(" of ")
            .count(page_count as i64);
        if !page.rows.is_empty() {
            out.raw(" · rows ")
                .count(first_row as i64)
                .raw("–")
                .count((first_row + page.rows.len() - 1) as i64)
                .raw(" of ")
                .count(page.total as i64);
        }
        out.raw("</span>");
        if selection.page < page_count {
            out.raw("<a rel=\"next\" ");
            href(out, here.page(selection.page + 1));
            out.raw(">Next →</a>");
        } else {
            out.raw("<span class=\"disabled\">Next →</span>");
        }
        out.raw("</nav>");
    }
}

/// A referrer: web addresses become links (that tell the other site nothing), anything
/// else (an app id) stays text.
fn referrer_link(out: &mut Html, referrer: &str) {
    if referrer.starts_with("https://") || referrer.starts_with("http://") {
        out.raw("<a href=\"")
            .text(referrer)
            .raw("\" rel=\"noopener noreferrer nofollow\">")
            .text(referrer)
            .raw("</a>");
    } else {
        out.text(referrer);
    }
}

/// One line of the referrers list.
enum Source<'a> {
    Host(&'a Host),
    /// Visits without a referrer.
    Direct(i64),
}

impl Source<'_> {
    fn visits(&self) -> i64 {
        match self {
            Source::Host(host) => host.visits,
            Source::Direct(visits) => *visits,
        }
    }

    fn write(&self, out: &mut Html) {
        match self {
            Source::Host(Host {
                host: Some(name),
                visits,
                referrers,
            }) if !referrers.is_empty() => {
                out.raw("<li class=\"expand\"><details><summary><span class=\"name\">")
                    .text(name)
                    .raw("</span><span class=\"num\">")
                    .count(*visits)
                    .raw("</span></summary><ul class=\"rows sub\">");
                for (referrer, visits) in referrers {
                    out.raw("<li><span class=\"name\">");
                    referrer_link(out, referrer);
                    out.raw("</span><span class=\"num\">")
                        .count(*visits)
                        .raw("</span></li>");
                }
                out.raw("</ul></details></li>");
            }
            Source::Host(Host {
                host: Some(name),
                visits,
                ..
            }) => {
                out.raw("<li><span class=\"name\">")
                    .text(name)
                    .raw("</span><span class=\"num\">")
                    .count(*visits)
                    .raw("</span></li>");
            }
            Source::Host(Host {
                host: None, visits, ..
            }) => {
                out.raw("<li class=\"other\"><span class=\"name\">Other referrers</span><span class=\"num\">")
                    .count(*visits)
                    .raw("</span></li>");
            }
            Source::Direct(visits) => {
                out.raw("<li class=\"other\"><span class=\"name\">Direct or unknown</span><span class=\"num\">")
                    .count(*visits)
                    .raw("</span></li>");
            }
        }
    }
}

/// Lines of a long list shown before the rest folds away.
const SHOWN_LINES: usize = 10;

/// Referring hosts, each expanding to its referring pages; the bounded remainder as "Other
/// referrers"; visits without a referrer as "Direct or unknown" when every host is listed
/// (otherwise that difference would include the hosts left out). The first lines show, the
/// rest fold into a `<details>`.
fn referrers(out: &mut Html, hosts: &[Host], visits: i64) {
    let referred: i64 = hosts.iter().map(|h| h.visits).sum();
    let complete = (hosts.len() as i64) < HOSTS;
    let direct = if complete {
        (visits - referred).max(0)
    } else {
        0
    };
    if hosts.is_empty() && direct == 0 {
        out.raw("<p class=\"empty-note\">No visits in this range.</p>");
        return;
    }
    let mut sources: Vec<Source> = hosts.iter().map(Source::Host).collect();
    if direct > 0 {
        sources.push(Source::Direct(direct));
    }
    // Stable: hosts keep the database's order among equals.
    sources.sort_by_key(|source| std::cmp::Reverse(source.visits()));
    out.raw("<ul class=\"rows hosts\">");
    for source in sources.iter().take(SHOWN_LINES) {
        source.write(out);
    }
    out.raw("</ul>");
    if sources.len() > SHOWN_LINES {
        out.raw("<details class=\"more\"><summary>");
        write_plural(
            out,
            (sources.len() - SHOWN_LINES) as i64,
            "more referring site",
            "more referring sites",
        );
        out.raw("</summary><ul class=\"rows hosts\">");
        for source in &sources[SHOWN_LINES..] {
            source.write(out);
        }
        out.raw("</ul></details>");
    }
    out.raw("<p class=\"note\">Visits by referring site; open one for its pages.");
    if !complete {
        out.raw(" The ")
            .number(HOSTS as f64)
            .raw(" sites that sent the most visits are listed.");
    }
    if hosts.iter().any(|h| h.host.is_none()) {
        out.raw(" “Other referrers” are visits from referrers beyond the number kept one by one each day.");
    }
    out.raw("</p>");
}

fn campaign_part(out: &mut Html, part: &Option<String>) {
    match part {
        Some(part) => {
            out.raw("<td>").text(part).raw("</td>");
        }
        None => {
            out.raw("<td class=\"missing\"><span aria-hidden=\"true\">–</span><span class=\"visually-hidden\">none</span></td>");
        }
    }
}

const CAMPAIGN_HEAD: &str = "<thead><tr><th scope=\"col\">Source</th><th scope=\"col\">Medium</th>\
     <th scope=\"col\">Campaign</th><th scope=\"col\" class=\"num\">Visits</th></tr></thead>";

fn campaign_rows(out: &mut Html, campaigns: &[Campaign]) {
    for campaign in campaigns {
        out.raw("<tr>");
        if campaign.source.is_none() && campaign.medium.is_none() && campaign.campaign.is_none() {
            out.raw("<td colspan=\"3\" class=\"other\">Other campaigns</td>");
        } else {
            campaign_part(out, &campaign.source);
            campaign_part(out, &campaign.medium);
            campaign_part(out, &campaign.campaign);
        }
        out.raw("<td class=\"num\">")
            .count(campaign.visits)
            .raw("</td></tr>");
    }
}

/// Campaigns (the page's `utm_*` parameters); the bounded remainder as "Other campaigns".
/// The first lines show, the rest fold into a `<details>` (a second table with the same
/// fixed columns, so they line up).
fn campaigns(out: &mut Html, campaigns: &[Campaign]) {
    if campaigns.is_empty() {
        out.raw("<p class=\"empty-note\">No campaign visits in this range.</p><p class=\"note\">Visits to links carrying <code>utm_source</code>, <code>utm_medium</code> or <code>utm_campaign</code> show here.</p>");
        return;
    }
    let shown = campaigns.len().min(SHOWN_LINES);
    out.raw("<table class=\"campaigns\">")
        .raw(CAMPAIGN_HEAD)
        .raw("<tbody>");
    campaign_rows(out, &campaigns[..shown]);
    out.raw("</tbody></table>");
    if campaigns.len() > shown {
        out.raw("<details class=\"more\"><summary>");
        write_plural(
            out,
            (campaigns.len() - shown) as i64,
            "more campaign",
            "more campaigns",
        );
        out.raw("</summary><table class=\"campaigns\"><thead class=\"visually-hidden\">")
            .raw(&CAMPAIGN_HEAD["<thead>".len()..])
            .raw("<tbody>");
        campaign_rows(out, &campaigns[shown..]);
        out.raw("</tbody></table></details>");
    }
}

/// The time-on-page histogram, its median and 90th percentile, and how they are estimated.
fn spent_section(out: &mut Html, period: &Period) {
    let histogram = &period.histogram;
    chart::spent(out, histogram);
    out.raw("<p class=\"note\">Median <strong>")
        .text(&format::estimate(histogram.median()))
        .raw("</strong> · 90th percentile <strong>")
        .text(&format::estimate(histogram.percentile(0.9)))
        .raw("</strong> · ");
    let reported = histogram.total();
    write_plural(out, reported, "visit", "visits").raw(if reported == 1 {
        " reported its time."
    } else {
        " reported their time."
    });
    out.raw("</p><p class=\"note\">Times are kept as these buckets, not one by one: the median and the percentile are estimated from them, assuming times spread evenly within a bucket. Only visible time counts; an hour or more is one bucket.</p>");
}

/// Live on the site: the total and the busiest open pages.
fn live_site(out: &mut Html, live: &LiveView, selection: &Selection) {
    out.raw("<p class=\"big\">");
    write_plural(out, live.visitors, "visitor", "visitors").raw(" on the site now</p>");
    if !live.paths.is_empty() {
        out.raw("<ul class=\"rows\">");
        for (path, visitors) in live.paths.iter().take(LIVE_PATHS) {
            out.raw("<li><span class=\"name\"><a ");
            href(out, Link::new(Target::Path(path), selection));
            out.raw(">")
                .text(path)
                .raw("</a></span><span class=\"num\">")
                .count(*visitors)
                .raw("</span></li>");
        }
        out.raw("</ul>");
    }
    out.raw("<p class=\"note\">Pages opened in the last 5 minutes and not left yet. Reload for the latest.</p>");
}

/// Live on one page.
fn live_path(out: &mut Html, visitors: i64) {
    out.raw("<p class=\"big\">");
    write_plural(out, visitors, "visitor", "visitors").raw(" on this page now</p><p class=\"note\">Opened in the last 5 minutes and not left yet. Reload for the latest.</p>");
}

/// The script tag to paste, shown until the first page is registered.
fn getting_started(out: &mut Html, context: &Context) {
    out.raw("<section class=\"card\" id=\"getting-started\"><h2>Getting started</h2><p>Add this tag to every page of ")
        .text(context.site)
        .raw(":</p><pre><code>&lt;script type=&quot;module&quot; src=&quot;")
        .text(context.base_url)
        .raw("/count.js&quot;&gt;&lt;/script&gt;</code></pre><p>Pages appear here when they are opened; a visit counts once a visitor has stayed ")
        .number(context.min_delay_secs)
        .raw(" seconds.</p></section>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insights::pages::PageRow;
    use crate::insights::{Histogram, Range};

    const CONTEXT: Context = Context {
        site: "https://example.org",
        base_url: "https://t.example",
        min_delay_secs: 19,
    };

    fn written(write: impl FnOnce(&mut Html)) -> String {
        let mut out = Html::new();
        write(&mut out);
        out.into_string()
    }

    fn day(text: &str) -> Day {
        Day::parse(text).unwrap()
    }

    fn period(
        range: Range,
        views: i64,
        visits: i64,
        visitors: i64,
        spent: &[(usize, i64)],
    ) -> Period {
        let mut histogram = Histogram::default();
        for &(bucket, count) in spent {
            histogram.counts[bucket] = count;
        }
        Period {
            range,
            views,
            visits,
            visitors,
            histogram,
        }
    }

    fn overview(query: &str, visits: i64, previous_visits: i64) -> Overview {
        let today = day("2024-03-15");
        let selection = Selection::parse(Some(query), today).unwrap();
        let range = selection.range;
        let days = (0..range.days())
            .map(|n| DayCounts {
                day: range.first.plus(n),
                views: 3,
                visits: 1,
                visitors: 2,
            })
            .collect();
        Overview {
            today,
            selection,
            summary: Summary {
                current: period(range, visits * 2, visits, visits, &[(2, 10), (5, 2)]),
                previous: period(
                    range.previous(),
                    previous_visits * 2,
                    previous_visits,
                    0,
                    &[],
                ),
            },
            days,
            hosts: vec![
                Host {
                    host: Some("news.example".into()),
                    visits: 7,
                    referrers: vec![
                        ("https://news.example/a".into(), 5),
                        ("https://news.example/b".into(), 2),
                    ],
                },
                Host {
                    host: Some("com.app".into()),
                    visits: 1,
                    referrers: vec![("android-app://com.app/".into(), 1)],
                },
                Host {
                    host: None,
                    visits: 3,
                    referrers: vec![],
                },
            ]
            .into(),
            campaigns: vec![
                Campaign {
                    source: Some("newsletter".into()),
                    medium: None,
                    campaign: Some("spring".into()),
                    visits: 4,
                },
                Campaign {
                    source: None,
                    medium: None,
                    campaign: None,
                    visits: 2,
                },
            ]
            .into(),
        }
    }

    fn rows(count: usize) -> Vec<PageRow> {
        (0..count)
            .map(|i| PageRow {
                path: format!("/p{i}"),
                views: 10,
                visits: 5,
                visitors: 4,
                engagement: Some(0.5),
                median_spent: Some(65.0),
            })
            .collect()
    }

    fn index(query: &str, total: usize, shown: usize, live: LiveView) -> String {
        let data = IndexData {
            overview: overview(query, 112, 100),
            pages: Page {
                rows: rows(shown),
                total,
            },
            live,
            getting_started: total == 0,
        };
        Pages::new().index(&CONTEXT, &data).into_string()
    }

    #[test]
    fn the_site_page_has_every_section_with_its_figures() {
        let live = LiveView {
            visitors: 3,
            paths: vec![("/p1".into(), 2), ("/p2".into(), 1)],
        };
        let html = index("", 2, 2, live);
        assert!(html.starts_with("<!doctype html>") && html.ends_with("</html>\n"));
        assert!(!html.contains("{{"), "every placeholder filled");
        assert!(html.contains("<h1>example.org</h1>"));
        assert!(html.contains("Last 30 days: 2024-02-15 to 2024-03-15 (30 days)"));
        for label in [
            "Views",
            "Visits",
            "Visitors",
            "Engagement",
            "Median time on page",
        ] {
            assert!(
                html.contains(&format!("<p class=\"label\">{label}</p>")),
                "{label}"
            );
        }
        assert!(html.contains("<p class=\"value\">224</p>"), "views");
        assert!(html.contains("<p class=\"value\">112</p>"), "visits");
        assert!(
            html.contains("<p class=\"value\">50\u{202F}%</p>"),
            "engagement"
        );
        assert!(html.contains("▲</span> <span class=\"visually-hidden\">up</span> 12\u{202F}%"));
        assert!(
            html.contains("<p class=\"change new\""),
            "visitors: none before"
        );
        assert!(
            html.contains("<p class=\"change same\""),
            "engagement: 50 % both times"
        );
        assert!(
            html.contains("<p class=\"change unknown\""),
            "no median before"
        );
        assert!(html.contains("vs previous 30 days"));
        assert!(
            html.contains("title=\"2024-01-16 to 2024-02-14: 100\""),
            "previous figure"
        );
        assert!(html.contains("Estimated from histogram buckets"));
        assert!(html.contains("<svg class=\"plot cols-m\""));
        assert_eq!(
            html.matches("<svg class=\"plot").count(),
            2,
            "daily and time on page"
        );
        assert!(html.contains("3 visitors on the site now"));
        assert!(html.contains("3 visitors now</a>"), "the badge");
        assert!(html.contains(">/p1</a></span><span class=\"num\">2</span>"));
        assert!(html.contains("<summary><span class=\"name\">news.example</span><span class=\"num\">7</span></summary>"));
        assert!(
            html.contains(
                "<a href=\"https://news.example/a\" rel=\"noopener noreferrer nofollow\">"
            )
        );
        assert!(
            html.contains("<span class=\"name\">android-app://com.app/</span>"),
            "apps are not links"
        );
        assert!(html.contains("Other referrers</span><span class=\"num\">3</span>"));
        assert!(
            html.contains("Direct or unknown</span><span class=\"num\">101</span>"),
            "112 − 11"
        );
        assert!(html.contains("<td>newsletter</td><td class=\"missing\">"));
        assert!(html.contains(
            "<td colspan=\"3\" class=\"other\">Other campaigns</td><td class=\"num\">2</td>"
        ));
        assert!(html.contains("Median <strong>26 s</strong>"), "{html}");
        assert!(html.contains("12 visits reported their time."));
        assert!(html.contains("2 pages with views or visits in this range"));
        assert!(!html.contains("class=\"pager\""), "one page needs no pager");
        assert!(!html.contains("Getting started"));
        assert!(html.contains("<details class=\"data\"><summary>Numbers per day</summary>"));
    }

    #[test]
    fn the_table_sorts_by_every_column_and_pages() {
        let html = index("range=7d&sort=views&page=2", 250, 100, LiveView::default());
        for sort in ["path", "visitors", "engagement", "spent"] {
            assert!(
                html.contains(&format!("href=\"/?range=7d&amp;sort={sort}\"")),
                "{sort}"
            );
        }
        assert!(
            html.contains("href=\"/?range=7d\""),
            "visits is the default order"
        );
        assert!(html.contains("<th scope=\"col\" class=\"num\" aria-sort=\"descending\"><a href=\"/?range=7d&amp;sort=views\""));
        assert_eq!(html.matches("aria-sort").count(), 1);
        assert!(html.contains("Page 2 of 3 · rows 101–200 of 250"));
        assert!(html.contains("<a rel=\"prev\" href=\"/?range=7d&amp;sort=views\">"));
        assert!(html.contains("<a rel=\"next\" href=\"/?range=7d&amp;sort=views&amp;page=3\">"));
        assert!(
            html.contains("<a href=\"/stats?path=/p0&amp;range=7d\">/p0</a>"),
            "paths link to their page, range kept"
        );
        assert!(html.contains("<td class=\"num\">1 min 5 s</td>"));
        assert!(html.contains("<input type=\"hidden\" name=\"sort\" value=\"views\">"));
        assert!(html.contains("<a href=\"/?sort=views\">30 days</a>"));
        assert!(
            html.contains("<a href=\"/?range=7d&amp;sort=views\" aria-current=\"page\">7 days</a>")
        );

        let past = index("page=9", 250, 0, LiveView::default());
        assert!(past.contains("There is no page 9: the table has 3 pages."));
        assert!(past.contains("<a rel=\"prev\" href=\"/?page=3\">"));
        assert!(past.contains("<span class=\"disabled\">Next →</span>"));
    }

    #[test]
    fn an_empty_site_explains_the_script_tag() {
        let mut data = IndexData {
            overview: overview("", 0, 0),
            pages: Page {
                rows: vec![],
                total: 0,
            },
            live: LiveView::default(),
            getting_started: true,
        };
        data.overview.hosts = Default::default();
        data.overview.campaigns = Default::default();
        data.overview.summary.current = period(data.overview.selection.range, 0, 0, 0, &[]);
        data.overview.days.iter_mut().for_each(|d| {
            *d = DayCounts {
                day: d.day,
                views: 0,
                visits: 0,
                visitors: 0,
            }
        });
        let html = Pages::new().index(&CONTEXT, &data).into_string();
        assert!(html.contains("Getting started"));
        assert!(html.contains(
            "&lt;script type=&quot;module&quot; src=&quot;https://t.example/count.js&quot;&gt;"
        ));
        assert!(html.contains("No page had views or visits in this range."));
        assert!(html.contains("No visits in this range."));
        assert!(html.contains("No campaign visits in this range."));
        assert!(html.contains(">No views or visits in this range</text>"));
        assert!(html.contains(">No times reported in this range</text>"));
        assert!(html.contains("0 visitors on the site now"));
        assert!(
            html.contains("<p class=\"value\">–</p>"),
            "no engagement without views"
        );
        assert!(
            html.contains("<p class=\"change same\""),
            "0 and 0: no change"
        );
        assert!(html.contains("0 visits reported their time."));
    }

    #[test]
    fn the_path_page_keeps_its_path_in_every_link() {
        let data = StatsData {
            path: "/blog/a b".into(),
            overview: overview("from=2024-01-01&to=2024-01-31", 1, 0),
            live_visitors: 1,
        };
        let html = Pages::new().stats(&CONTEXT, &data).into_string();
        assert!(!html.contains("{{"));
        assert!(html.contains("<title>/blog/a b · oxitraffic</title>"));
        assert!(html.contains("<span class=\"path\">/blog/a b</span>"));
        assert!(
            html.contains("href=\"https://example.org/blog/a%20b\""),
            "open the page itself"
        );
        assert!(html.contains("<a href=\"/?from=2024-01-01&amp;to=2024-01-31\">← All pages</a>"));
        assert!(html.contains("<a href=\"/stats?path=/blog/a%2520b&amp;range=7d\">7 days</a>"));
        assert!(html.contains("<input type=\"hidden\" name=\"path\" value=\"/blog/a%20b\">"));
        assert!(html.contains("name=\"from\" value=\"2024-01-01\" max=\"2024-03-15\""));
        assert!(html.contains("<button type=\"submit\" class=\"current\">"));
        assert!(!html.contains("aria-current"), "no preset is current");
        assert!(html.contains("Custom range: 2024-01-01 to 2024-01-31 (31 days)"));
        assert!(html.contains("vs previous 31 days"));
        assert!(html.contains("1 visitor on this page now"));
        assert!(
            !html.contains("id=\"pages\""),
            "no pages table for one page"
        );
        assert!(html.contains("1 visitor on this page now</a>"));
    }

    #[test]
    fn long_lists_fold_into_details_and_direct_visits_need_every_host() {
        let host = |i: i64| Host {
            host: Some(format!("h{i}.example")),
            visits: 100 - i,
            referrers: vec![(format!("https://h{i}.example/"), 100 - i)],
        };
        let hosts: Vec<Host> = (0..15).map(host).collect();
        let html = written(|out| referrers(out, &hosts, 2000));
        let (shown, folded) = html.split_once("<details class=\"more\">").unwrap();
        assert_eq!(shown.matches("<li class=").count(), 10);
        assert!(
            shown.starts_with("<ul class=\"rows hosts\"><li class=\"other\"><span class=\"name\">Direct or unknown</span><span class=\"num\">605</span>"),
            "most visits first: {shown}"
        );
        assert!(folded.starts_with("<summary>6 more referring sites</summary>"));
        assert!(folded.contains("h14.example"));

        let all: Vec<Host> = (0..HOSTS).map(host).collect();
        let html = written(|out| referrers(out, &all, 1_000_000));
        assert!(
            !html.contains("Direct or unknown"),
            "unknown when hosts are left out"
        );
        assert!(html.contains("The 100 sites that sent the most visits are listed."));

        let many: Vec<Campaign> = (0..12)
            .map(|i| Campaign {
                source: Some(format!("s{i}")),
                medium: None,
                campaign: None,
                visits: 20 - i,
            })
            .collect();
        let html = written(|out| campaigns(out, &many));
        let (shown, folded) = html.split_once("<details class=\"more\">").unwrap();
        assert_eq!(shown.matches("<tr><td>").count(), 10);
        assert!(folded.starts_with("<summary>2 more campaigns</summary><table class=\"campaigns\"><thead class=\"visually-hidden\"><tr>"));
        assert!(folded.contains("<td>s11</td>"));
    }

    #[test]
    fn the_phone_chart_opens_on_its_end_without_script() {
        // The scroller is right-to-left, so its initial scroll position is its right end; the
        // plot inside is left-to-right again. Every plot wider than a phone has a minimum
        // width on a narrow screen (checked in Chromium by tests/screenshots.rs).
        let rule = |selector: &str| {
            let start = CSS
                .find(&format!("{selector} {{"))
                .unwrap_or_else(|| panic!("{selector}"));
            CSS[start..start + CSS[start..].find('}').unwrap()].to_string()
        };
        assert!(
            rule(".scroller").contains("overflow-x: auto")
                && rule(".scroller").contains("direction: rtl")
        );
        assert!(rule(".scroller > svg").contains("direction: ltr"));
        for columns in [30, 90, 365] {
            let class = chart::width_class(columns);
            assert!(
                rule(&format!(".plot.{class}")).contains("min-width"),
                "{class}"
            );
        }
        let (columns, unit) = chart::columns(&overview("", 1, 1).days);
        let svg = written(|out| chart::daily(out, &columns, unit, day("2024-03-15")));
        assert!(svg.contains("<div class=\"scroller\"><svg class=\"plot cols-m\" width=\"100%\""));
        assert!(svg.contains(">Mar 15</text>"), "the last day is labelled");
    }

    #[test]
    fn visitor_supplied_text_is_escaped_everywhere() {
        let hostile = "/x\"><script>alert(1)</script><img src=x onerror=alert(2)>";
        let mut overview = overview("", 5, 5);
        overview.hosts = vec![Host {
            host: Some("<b>evil</b>".into()),
            visits: 1,
            referrers: vec![(
                "https://evil.example/\"><script>alert(3)</script>".into(),
                1,
            )],
        }]
        .into();
        overview.campaigns = vec![Campaign {
            source: Some("<script>s</script>".into()),
            medium: Some("\"m'".into()),
            campaign: Some("<img src=x>".into()),
            visits: 1,
        }]
        .into();
        let mut row = rows(1).remove(0);
        row.path = hostile.into();
        let data = IndexData {
            overview,
            pages: Page {
                rows: vec![row],
                total: 1,
            },
            live: LiveView {
                visitors: 1,
                paths: vec![(hostile.into(), 1)],
            },
            getting_started: false,
        };
        let pages = Pages::new();
        let index = pages.index(&CONTEXT, &data).into_string();
        let stats = pages
            .stats(
                &CONTEXT,
                &StatsData {
                    path: hostile.into(),
                    overview: data.overview,
                    live_visitors: 0,
                },
            )
            .into_string();
        for html in [&index, &stats] {
            assert!(!html.contains("<script"), "{html}");
            assert!(!html.contains("<img"), "{html}");
            assert!(!html.contains("<b>"), "{html}");
            assert!(html.contains("&lt;script&gt;s&lt;/script&gt;"));
            assert!(html.contains("href=\"https://evil.example/&quot;&gt;&lt;script&gt;"));
        }
        assert!(index.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(stats.contains("<title>/x&quot;&gt;&lt;script&gt;"));
        let message = pages.message(&CONTEXT, "Not found", "<x>").into_string();
        assert!(message.contains("<p>&lt;x&gt;</p>"));
    }
}
