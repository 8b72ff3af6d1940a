"""What the card says about known datasets and base models: names, descriptions and BibTeX."""

DATASETS = {  # Hub id -> (pretty name, what the texts are, BibTeX)
    "stanfordnlp/sst2": ("SST-2 (GLUE)", "single sentences from Rotten Tomatoes movie reviews", """\
@inproceedings{socher2013recursive,
  title = {Recursive Deep Models for Semantic Compositionality Over a Sentiment Treebank},
  author = {Socher, Richard and Perelygin, Alex and Wu, Jean and Chuang, Jason and Manning, Christopher D. and
            Ng, Andrew and Potts, Christopher},
  booktitle = {Proceedings of EMNLP},
  year = {2013}
}"""),
    "stanfordnlp/imdb": ("IMDb", "full movie reviews from IMDb", """\
@inproceedings{maas2011learning,
  title = {Learning Word Vectors for Sentiment Analysis},
  author = {Maas, Andrew L. and Daly, Raymond E. and Pham, Peter T. and Huang, Dan and
            Ng, Andrew Y. and Potts, Christopher},
  booktitle = {Proceedings of ACL},
  year = {2011}
}"""),
    "cornell-movie-review-data/rotten_tomatoes": ("Rotten Tomatoes", "movie-review snippets from Rotten Tomatoes", """\
@inproceedings{pang2005seeing,
  title = {Seeing Stars: Exploiting Class Relationships for Sentiment Categorization with Respect to Rating Scales},
  author = {Pang, Bo and Lee, Lillian},
  booktitle = {Proceedings of ACL},
  year = {2005}
}"""),
}  # fmt: skip
BASE_MODELS = {  # Hub id -> BibTeX of the paper behind it
    "sentence-transformers/all-MiniLM-L6-v2": """\
@inproceedings{wang2020minilm,
  title = {MiniLM: Deep Self-Attention Distillation for Task-Agnostic Compression of Pre-Trained Transformers},
  author = {Wang, Wenhui and Wei, Furu and Dong, Li and Bao, Hangbo and Yang, Nan and Zhou, Ming},
  booktitle = {Advances in Neural Information Processing Systems},
  year = {2020}
}""",
    "google-bert/bert-base-uncased": """\
@inproceedings{devlin2019bert,
  title = {BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding},
  author = {Devlin, Jacob and Chang, Ming-Wei and Lee, Kenton and Toutanova, Kristina},
  booktitle = {Proceedings of NAACL-HLT},
  year = {2019}
}""",
}  # fmt: skip
BASE_MODELS["bert-base-uncased"] = BASE_MODELS["google-bert/bert-base-uncased"]
