package conformance

var faultTests = []test{}
