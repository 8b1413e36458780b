package conformance

var txTests = []test{}
