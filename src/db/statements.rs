//! Every SQL statement the tracker runs, prepared once per connection.

use tokio_postgres::{Client, Error, Statement};

pub struct Statements {
    pub ping: Statement,
}

impl Statements {
    pub async fn prepare(client: &Client) -> Result<Statements, Error> {
        Ok(Statements {
            ping: client.prepare("SELECT 1").await?,
        })
    }
}
