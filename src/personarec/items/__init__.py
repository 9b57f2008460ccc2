"""Items: text embeddings, named two-level semantic clusters and semantic IDs (the ItemSpace).

Read in order: ``config`` (the [items] section), ``embed`` (cached sentence-transformers),
``kmeans`` + ``clusters`` (coarse -> fine), ``naming`` (class-based TF-IDF names, rename hook),
``semantic_ids`` (RQ-KMeans + uniqueness digit), ``build`` (split -> ItemSpace, pipeline stage),
``space`` (the saved artifact), ``commands`` (CLI).
"""
