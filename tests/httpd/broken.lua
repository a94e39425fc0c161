-- does not compile: a reload with it must be refused
return 200, "never" +
