package conformance

var deliveryTests = []test{}
