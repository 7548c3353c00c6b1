"""Training of the emotion detector (not imported at run time): corpora and cached features
(:mod:`.data`), weights, cross-validation and fitting (:mod:`.train`), the report
(:mod:`.report`, prose in ``report_template.md``) and the command line (:mod:`.cli`)."""
