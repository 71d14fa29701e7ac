package presence_test

func helperMain() bool { return false }
