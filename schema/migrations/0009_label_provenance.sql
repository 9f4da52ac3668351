-- Who produced each label through Vigil (the `vigil-sent-by` header): the API key that posted
-- it to the intake, or the investigator's key whose alert work gave it, as the audit trail
-- names keys; NULL for labels written to the topic directly (`vigil replay`, another producer).
ALTER TABLE labels ADD COLUMN sent_by text;
