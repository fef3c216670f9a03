"""State machine definitions, built in Python and written out as Amazon States Language."""
