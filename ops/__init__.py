"""Operations code: the embedded broker launcher and topic administration (configs live beside it)."""
