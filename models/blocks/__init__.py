"""Blocks several model families share, in one place: the SEANet encoder and decoder (EnCodec,
Mimi, Vocos-EnCodec), the DAC-style Snake conv stacks (DAC, Oobleck), the factorised vector
quantizer (SNAC, DAC) and the checkpoint key maps that go with them. Families import these;
they never import each other, except where one composes another (Vocos-EnCodec decodes
EnCodec's codes, so it builds EnCodec's encoder and quantizer)."""
