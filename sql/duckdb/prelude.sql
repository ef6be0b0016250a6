-- DuckDB only, read first: the functions the queries of sql/ call by their Athena (Trino) names
-- and DuckDB knows by others, so that the same query files run unchanged in both.
--
-- approx_percentile(x, p): Trino's approximate percentile. Here DuckDB's exact one, interpolated
-- between the two nearest values (quantile_cont), so local figures are exact and Athena's may
-- differ from them by its approximation.
CREATE OR REPLACE MACRO approx_percentile(x, p) AS quantile_cont(x, p);
