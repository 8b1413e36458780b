package conformance

var lifecycleTests = []test{}
