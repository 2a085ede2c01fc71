func probe() {}
