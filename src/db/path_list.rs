//! Every registered path with its visits, read row by row into one compact buffer.
//!
//! A site can have tens of thousands of paths; as tokio-postgres rows they would cost two
//! allocations and about 150 bytes each. Here they cost their text plus 16 bytes, in two
//! allocations in all, and no row outlives the loop that reads it.

use super::Conn;

#[derive(Default)]
pub struct PathList {
    text: String,
    /// (end of the path in `text`, visits); each path starts where the previous one ended.
    entries: Vec<(u32, i64)>,
}

impl PathList {
    /// Paths most visited first, as `paths_by_visits` orders them.
    pub async fn load(conn: &Conn) -> Result<PathList, tokio_postgres::Error> {
        let rows = conn
            .client
            .query_raw(&conn.statements.paths_by_visits, std::iter::empty::<i32>())
            .await?;
        let mut rows = std::pin::pin!(rows);
        let mut list = PathList::default();
        while let Some(row) = super::next_row(rows.as_mut()).await {
            let row = row?;
            list.push(row.get(0), row.get(1));
        }
        list.text.shrink_to_fit();
        list.entries.shrink_to_fit();
        Ok(list)
    }

    pub fn push(&mut self, path: &str, visits: i64) {
        self.text.push_str(path);
        self.entries.push((self.text.len() as u32, visits));
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The paths in order, with their visits.
    pub fn iter(&self) -> impl Iterator<Item = (&str, i64)> + '_ {
        let starts = std::iter::once(0).chain(self.entries.iter().map(|(end, _)| *end as usize));
        starts
            .zip(&self.entries)
            .map(|(start, &(end, visits))| (&self.text[start..end as usize], visits))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_come_back_in_order() {
        let mut list = PathList::default();
        for (path, visits) in [("/", 9), ("/café", 3), ("", 0), ("/a", -1)] {
            list.push(path, visits);
        }
        assert_eq!(
            list.iter().collect::<Vec<_>>(),
            vec![("/", 9), ("/café", 3), ("", 0), ("/a", -1)]
        );
        assert!(PathList::default().iter().next().is_none());
    }
}
