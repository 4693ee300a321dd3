// The Postgres library has no tests yet; this file only lets the test target build.
